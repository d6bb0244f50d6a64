// Broadcasting binary op (up to 6 dims); OP is an expression in x and y.
// p: [n, shape[6], a_stride[6], b_stride[6]]
@group(0) @binding(1) var<storage, read> lhs: array<B1>;
@group(0) @binding(2) var<storage, read> rhs: array<B2>;
@group(0) @binding(3) var<storage, read_write> dst: array<B3>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    let x = f32(lhs[strided_offset(i, 1u, 7u)]);
    let y = f32(rhs[strided_offset(i, 1u, 13u)]);
    dst[i] = B3({{OP}});
}
