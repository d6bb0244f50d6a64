// Broadcasting binary op (up to 6 dims); OP is an expression in x and y. With a check id
// (integer tensors on f32 carriers), a result beyond ±2^24 writes the id into `bad` (read back
// with the outputs: the run fails rather than answer a rounded integer).
// p: [n, shape[6], a_stride[6], b_stride[6], check_id]
@group(0) @binding(1) var<storage, read> lhs: array<B1>;
@group(0) @binding(2) var<storage, read> rhs: array<B2>;
@group(0) @binding(3) var<storage, read_write> dst: array<B3>;
@group(0) @binding(4) var<storage, read_write> bad: array<B4>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    let x = f32(lhs[strided_offset(i, 1u, 7u)]);
    let y = f32(rhs[strided_offset(i, 1u, 13u)]);
    let r = {{OP}};
    if (p[19] != 0u && abs(r) > 16777216.0) { bad[0] = B4(f32(p[19])); }
    dst[i] = B3(r);
}
