// Strided view copy (up to 6 dims): Transpose, Slice, Expand, Concat pieces.
// p: [n, src_base, dst_base, shape[6], src_stride[6] (i32), dst_stride[6] (i32)]
@group(0) @binding(1) var<storage, read> src: array<B1>;
@group(0) @binding(2) var<storage, read_write> dst: array<B2>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    var rem = i;
    var s = i32(p[1]);
    var d = i32(p[2]);
    for (var k = 0u; k < 6u; k++) {
        let ax = 5u - k;
        let size = p[3u + ax];
        let c = i32(rem % size);
        rem = rem / size;
        s += c * bitcast<i32>(p[9u + ax]);
        d += c * bitcast<i32>(p[15u + ax]);
    }
    dst[d] = B2(src[s]);
}
