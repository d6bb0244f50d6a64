// GatherND / ScatterND (batch_dims 0): index tuple j (q integers, negative wraps) picks a slice
// of `inner` elements of the indexed tensor. Over the slices' elements i = j * inner + e:
// gather: c[i] = a[at]; scatter: c[at] = a[i].
// p: [n, q, inner, dims[6] (of the first q axes), strides[6] (of those axes), scatter, check_id]
// (an index out of range writes check_id into `bad`, as in gather.wgsl)
@group(0) @binding(1) var<storage, read> a: array<B1>;
@group(0) @binding(2) var<storage, read> idx: array<B2>;
@group(0) @binding(3) var<storage, read_write> c: array<B3>;
@group(0) @binding(4) var<storage, read_write> bad: array<B4>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    let q = p[1];
    let j = i / p[2];
    var at = i % p[2];
    for (var t = 0u; t < q; t++) {
        var k = i32(f32(idx[j * q + t]));
        if (k < 0) { k += i32(p[3u + t]); }
        if (k < 0 || k >= i32(p[3u + t])) { bad[0] = B4(f32(p[16])); }
        at += u32(clamp(k, 0, i32(p[3u + t]) - 1)) * p[9u + t];
    }
    if (p[15] != 0u) {
        c[at] = B3(f32(a[i]));
    } else {
        c[i] = B3(f32(a[at]));
    }
}
