// 2-D max / average pooling, one output per thread.
// p: [NC, H, W, OH, OW, KH, KW, SH, SW, PT, PL, DH, DW, kind (0 max, 1 avg, 2 avg incl. pad), PB, PR]
@group(0) @binding(1) var<storage, read> x: array<B1>;
@group(0) @binding(2) var<storage, read_write> y: array<B2>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let H = p[1]; let W = p[2]; let OH = p[3]; let OW = p[4];
    let i = flat_index(gid, nwg);
    if (i >= p[0] * OH * OW) { return; }
    let ox = i % OW;
    let oy = (i / OW) % OH;
    let plane = i / (OW * OH);
    let kind = p[13];
    var acc = select(0.0, -3.4028235e38, kind == 0u);
    var count = 0u;
    var padded = 0u;
    for (var ky = 0u; ky < p[5]; ky++) {
        let iy = i32(oy * p[7] + ky * p[11]) - i32(p[9]);
        for (var kx = 0u; kx < p[6]; kx++) {
            let ix = i32(ox * p[8] + kx * p[12]) - i32(p[10]);
            if (iy < i32(H + p[14]) && ix < i32(W + p[15])) { padded += 1u; }
            if (iy < 0 || ix < 0 || iy >= i32(H) || ix >= i32(W)) { continue; }
            let v = f32(x[plane * H * W + u32(iy) * W + u32(ix)]);
            count += 1u;
            if (kind == 0u) { acc = max(acc, v); } else { acc += v; }
        }
    }
    if (kind == 1u) { acc = acc / f32(max(count, 1u)); }
    if (kind == 2u) { acc = acc / f32(max(padded, 1u)); }
    y[i] = B2(acc);
}
