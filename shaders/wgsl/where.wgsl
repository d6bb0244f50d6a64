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
    var rem = i;
    var ic = 0u;
    var ix = 0u;
    var iy = 0u;
    for (var k = 0u; k < 6u; k++) {
        let ax = 5u - k;
        let c = rem % p[1u + ax];
        rem = rem / p[1u + ax];
        ic += c * p[7u + ax];
        ix += c * p[13u + ax];
        iy += c * p[19u + ax];
    }
    dst[i] = B4(select(f32(ys[iy]), f32(xs[ix]), f32(cond[ic]) != 0.0));
}
