// Unfolds convolution windows into GEMM columns over (D, H, W) (2-D convolutions have D = 1):
// cols[n][c][kz][ky][kx][oz][oy][ox] = x[n][c][iz][iy][ix] with iz = oz*sd + kz*dd - pd (and
// iy, ix alike), zero outside the input (the padding).
// p: [total, C, D, H, W, KD, KH, KW, OD, OH, OW, sd, sh, sw, pd, ph, pw, dd, dh, dw]
@group(0) @binding(1) var<storage, read> x: array<B1>;
@group(0) @binding(2) var<storage, read_write> cols: array<B2>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    // Digits of i from the fastest: ox, oy, oz, kx, ky, kz, then the (n, c) plane.
    var rest = i;
    var digit: array<u32, 6>;
    let sizes = array<u32, 6>(p[10], p[9], p[8], p[7], p[6], p[5]);
    for (var a = 0u; a < 6u; a++) {
        digit[a] = rest % sizes[a];
        rest = rest / sizes[a];
    }
    let iz = i32(digit[2] * p[11] + digit[5] * p[17]) - i32(p[14]);
    let iy = i32(digit[1] * p[12] + digit[4] * p[18]) - i32(p[15]);
    let ix = i32(digit[0] * p[13] + digit[3] * p[19]) - i32(p[16]);
    var v = 0.0;
    if (iz >= 0 && iy >= 0 && ix >= 0 && iz < i32(p[2]) && iy < i32(p[3]) && ix < i32(p[4])) {
        v = f32(x[((rest * p[2] + u32(iz)) * p[3] + u32(iy)) * p[4] + u32(ix)]);
    }
    cols[i] = B2(v);
}
