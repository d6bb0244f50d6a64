// GatherElements / ScatterElements along one axis, over the index tensor's elements (up to 6
// dims): the element at index i sits in the other tensor at the same coordinates except on the
// axis, where idx[i] (negative wraps) chooses. Gather: c[i] = a[at]; scatter: c[at] = a[i].
// p: [n, shape[6] (of idx), strides[6] (of the other tensor; 0 on the axis), axis_len,
//     axis_stride, scatter, check_id] (an index out of range writes check_id into `bad`, as in gather.wgsl)
@group(0) @binding(1) var<storage, read> a: array<B1>;
@group(0) @binding(2) var<storage, read> idx: array<B2>;
@group(0) @binding(3) var<storage, read_write> c: array<B3>;
@group(0) @binding(4) var<storage, read_write> bad: array<B4>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    var k = i32(f32(idx[i]));
    if (k < 0) { k += i32(p[13]); }
    if (k < 0 || k >= i32(p[13])) { bad[0] = B4(f32(p[16])); }
    let at = strided_offset(i, 1u, 7u) + u32(clamp(k, 0, i32(p[13]) - 1)) * p[14];
    if (p[15] != 0u) {
        c[at] = B3(f32(a[i]));
    } else {
        c[i] = B3(f32(a[at]));
    }
}
