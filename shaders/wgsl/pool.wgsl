// Max / average pooling over (D, H, W) (2-D pooling has D = 1), one output per thread.
// p: [NC, D, H, W, OD, OH, OW, KD, KH, KW, sd, sh, sw, pd, ph, pw, dd, dh, dw,
//     kind (0 max, 1 avg, 2 avg incl. pad), pd_end, ph_end, pw_end]
@group(0) @binding(1) var<storage, read> x: array<B1>;
@group(0) @binding(2) var<storage, read_write> y: array<B2>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let D = p[1]; let H = p[2]; let W = p[3]; let OD = p[4]; let OH = p[5]; let OW = p[6];
    let i = flat_index(gid, nwg);
    if (i >= p[0] * OD * OH * OW) { return; }
    let ox = i % OW;
    let oy = (i / OW) % OH;
    let oz = (i / (OW * OH)) % OD;
    let plane = i / (OW * OH * OD);
    let kind = p[19];
    var acc = select(0.0, -3.4028235e38, kind == 0u);
    var count = 0u;
    var padded = 0u;
    for (var kz = 0u; kz < p[7]; kz++) {
        let iz = i32(oz * p[10] + kz * p[16]) - i32(p[13]);
        for (var ky = 0u; ky < p[8]; ky++) {
            let iy = i32(oy * p[11] + ky * p[17]) - i32(p[14]);
            for (var kx = 0u; kx < p[9]; kx++) {
                let ix = i32(ox * p[12] + kx * p[18]) - i32(p[15]);
                if (iz < i32(D + p[20]) && iy < i32(H + p[21]) && ix < i32(W + p[22])) { padded += 1u; }
                if (iz < 0 || iy < 0 || ix < 0 || iz >= i32(D) || iy >= i32(H) || ix >= i32(W)) { continue; }
                let v = f32(x[((plane * D + u32(iz)) * H + u32(iy)) * W + u32(ix)]);
                count += 1u;
                if (kind == 0u) { acc = nmax(acc, v); } else { acc += v; }
            }
        }
    }
    if (kind == 1u) { acc = acc / f32(max(count, 1u)); }
    if (kind == 2u) { acc = acc / f32(max(padded, 1u)); }
    y[i] = B2(acc);
}
