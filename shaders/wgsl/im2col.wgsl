// Unfolds convolution windows into GEMM columns: cols[n][c][ky][kx][oy][ox] = x[n][c][iy][ix]
// with iy = oy*sh + ky*dh - ph (and ix alike), zero outside the image (the padding).
// p: [total, C, H, W, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw]
@group(0) @binding(1) var<storage, read> x: array<B1>;
@group(0) @binding(2) var<storage, read_write> cols: array<B2>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    let ox = i % p[7];
    let oy = (i / p[7]) % p[6];
    let kx = (i / (p[7] * p[6])) % p[5];
    let ky = (i / (p[7] * p[6] * p[5])) % p[4];
    let plane = i / (p[7] * p[6] * p[5] * p[4]);
    let iy = i32(oy * p[8] + ky * p[12]) - i32(p[10]);
    let ix = i32(ox * p[9] + kx * p[13]) - i32(p[11]);
    var v = 0.0;
    if (iy >= 0 && ix >= 0 && iy < i32(p[2]) && ix < i32(p[3])) {
        v = f32(x[(plane * p[2] + u32(iy)) * p[3] + u32(ix)]);
    }
    cols[i] = B2(v);
}
