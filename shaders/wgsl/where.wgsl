// Where(cond, x, y) with three-way broadcasting (up to 6 dims).
// p: [n, shape[6], c_stride[6], x_stride[6], y_stride[6]]
@group(0) @binding(1) var<storage, read> cond: array<B1>;
@group(0) @binding(2) var<storage, read> xs: array<B2>;
@group(0) @binding(3) var<storage, read> ys: array<B3>;
@group(0) @binding(4) var<storage, read_write> dst: array<B4>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    let ic = strided_offset(i, 1u, 7u);
    let ix = strided_offset(i, 1u, 13u);
    let iy = strided_offset(i, 1u, 19u);
    dst[i] = B4(select(f32(ys[iy]), f32(xs[ix]), f32(cond[ic]) != 0.0));
}
