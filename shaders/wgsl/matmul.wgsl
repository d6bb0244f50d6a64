// Batched GEMM with 16x16 shared-memory tiles: C[b] = alpha * A[b] * B[b] + beta * bias, then
// the fused activation. Strides express transposes and batch broadcasting (stride 0).
// p: [M, N, K, a_batch, a_rs, a_cs, b_batch, b_rs, b_cs, has_bias, bias_rs, bias_cs,
//     alpha_bits, beta_bits, act, lo_bits, hi_bits, c_base, c_batch]: C[b] starts at
//     c_base + b * c_batch (a Concat's output can be written in place).
@group(0) @binding(1) var<storage, read> a: array<B1>;
@group(0) @binding(2) var<storage, read> bm: array<B2>;
@group(0) @binding(3) var<storage, read> bias: array<B3>;
@group(0) @binding(4) var<storage, read_write> c: array<B4>;

const T: u32 = 16u;
var<workgroup> ta: array<array<f32, 16>, 16>;
var<workgroup> tb: array<array<f32, 16>, 16>;

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let m = p[0]; let n = p[1]; let k = p[2];
    let row = wid.y * T + lid.y;
    let col = wid.x * T + lid.x;
    let batch = wid.z;
    let a0 = batch * p[3];
    let b0 = batch * p[6];
    var acc = 0.0;
    let tiles = (k + T - 1u) / T;
    for (var t = 0u; t < tiles; t++) {
        let ka = t * T + lid.x;
        let kb = t * T + lid.y;
        var va = 0.0;
        if (row < m && ka < k) { va = f32(a[a0 + row * p[4] + ka * p[5]]); }
        var vb = 0.0;
        if (kb < k && col < n) { vb = f32(bm[b0 + kb * p[7] + col * p[8]]); }
        ta[lid.y][lid.x] = va;
        tb[lid.y][lid.x] = vb;
        workgroupBarrier();
        for (var i = 0u; i < T; i++) {
            acc += ta[lid.y][i] * tb[i][lid.x];
        }
        workgroupBarrier();
    }
    if (row >= m || col >= n) { return; }
    var v = pf(12u) * acc;
    if (p[9] == 1u) {
        v += pf(13u) * f32(bias[row * p[10] + col * p[11]]);
    }
    c[p[17] + batch * p[18] + row * n + col] = B4(activate(v, p[14], pf(15u), pf(16u)));
}
