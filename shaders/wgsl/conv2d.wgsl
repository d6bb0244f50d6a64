// Direct 2-D convolution, one output element per thread, groups (depthwise included), bias and
// fused activation. p: [N, C, H, W, M, OH, OW, KH, KW, SH, SW, PT, PL, DH, DW, G, has_bias,
// act, lo_bits, hi_bits]
@group(0) @binding(1) var<storage, read> x: array<B1>;
@group(0) @binding(2) var<storage, read> w: array<B2>;
@group(0) @binding(3) var<storage, read> bias: array<B3>;
@group(0) @binding(4) var<storage, read_write> y: array<B4>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let C = p[1]; let H = p[2]; let W = p[3]; let M = p[4]; let OH = p[5]; let OW = p[6];
    let KH = p[7]; let KW = p[8]; let G = p[15];
    let total = p[0] * M * OH * OW;
    let i = flat_index(gid, nwg);
    if (i >= total) { return; }
    let ox = i % OW;
    let oy = (i / OW) % OH;
    let oc = (i / (OW * OH)) % M;
    let img = i / (OW * OH * M);
    let cg = C / G;
    let g = oc / (M / G);
    var acc = 0.0;
    for (var ci = 0u; ci < cg; ci++) {
        let xc = (img * C + g * cg + ci) * H * W;
        let wc = (oc * cg + ci) * KH * KW;
        for (var ky = 0u; ky < KH; ky++) {
            let iy = i32(oy * p[9] + ky * p[13]) - i32(p[11]);
            if (iy < 0 || iy >= i32(H)) { continue; }
            for (var kx = 0u; kx < KW; kx++) {
                let ix = i32(ox * p[10] + kx * p[14]) - i32(p[12]);
                if (ix < 0 || ix >= i32(W)) { continue; }
                acc += f32(x[xc + u32(iy) * W + u32(ix)]) * f32(w[wc + ky * KW + kx]);
            }
        }
    }
    if (p[16] == 1u) { acc += f32(bias[oc]); }
    y[i] = B4(activate(acc, p[17], pf(18u), pf(19u)));
}
