// Row-wise ops over the contiguous trailing block, one row per thread:
// kind 0 mean, 1 sum, 2 max, 3 min, 4 softmax, 5 log-softmax, 6 layer norm (eps = pf(3)),
// 7 sum of squares, 8 L1, 9 L2, 10 log-sum, 11 log-sum-exp, 12 product, 13 RMS norm,
// 14 argmax, 15 argmin (p[4] = 1: last index among ties), 16 softmax with all -inf rows
// giving zeros (attention).
// p: [rows, len, kind, eps_bits, has_bias | select_last]
@group(0) @binding(1) var<storage, read> x: array<B1>;
@group(0) @binding(2) var<storage, read> scale: array<B2>;
@group(0) @binding(3) var<storage, read> shift: array<B3>;
@group(0) @binding(4) var<storage, read_write> y: array<B4>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = flat_index(gid, nwg);
    if (r >= p[0]) { return; }
    let len = p[1];
    let kind = p[2];
    let base = r * len;
    if (kind >= 7u && kind <= 12u) {
        var acc = select(0.0, 1.0, kind == 12u);
        var mx = -3.4028235e38;
        if (kind == 11u) { for (var j = 0u; j < len; j++) { mx = nmax(mx, f32(x[base + j])); } }
        for (var j = 0u; j < len; j++) {
            let v = f32(x[base + j]);
            if (kind == 7u || kind == 9u) { acc += v * v; }
            else if (kind == 8u) { acc += abs(v); }
            else if (kind == 10u) { acc += v; }
            else if (kind == 11u) { acc += exp(v - mx); }
            else { acc *= v; }
        }
        if (kind == 9u) { acc = sqrt(acc); }
        if (kind == 10u) { acc = log(acc); }
        if (kind == 11u) { acc = mx + log(acc); }
        y[r] = B4(acc);
        return;
    }
    if (kind == 14u || kind == 15u) {
        var best = 0u;
        var bv = f32(x[base]);
        for (var j = 1u; j < len; j++) {
            let v = f32(x[base + j]);
            let better = select((v < bv), (v > bv), kind == 14u);
            if (better || (p[4] == 1u && v == bv)) { best = j; bv = v; }
        }
        y[r] = B4(f32(best));
        return;
    }
    if (kind == 13u) {
        var ms = 0.0;
        for (var j = 0u; j < len; j++) { let v = f32(x[base + j]); ms += v * v; }
        let inv = 1.0 / sqrt(ms / f32(len) + pf(3u));
        for (var j = 0u; j < len; j++) { y[base + j] = B4(f32(x[base + j]) * inv * f32(scale[j])); }
        return;
    }
    if (kind <= 3u) {
        var acc = select(0.0, f32(x[base]), kind >= 2u);
        for (var j = 0u; j < len; j++) {
            let v = f32(x[base + j]);
            if (kind <= 1u) { acc += v; } else if (kind == 2u) { acc = nmax(acc, v); } else { acc = nmin(acc, v); }
        }
        if (kind == 0u) { acc = acc / f32(len); }
        y[r] = B4(acc);
        return;
    }
    if (kind <= 5u || kind == 16u) {
        var mx = -3.4028235e38;
        for (var j = 0u; j < len; j++) { mx = nmax(mx, f32(x[base + j])); }
        var sum = 0.0;
        for (var j = 0u; j < len; j++) { sum += exp(f32(x[base + j]) - mx); }
        // Kind 16 (attention): a row masked everywhere (-inf, so no term left) attends to nothing.
        let nothing = kind == 16u && sum == 0.0;
        for (var j = 0u; j < len; j++) {
            let e = f32(x[base + j]) - mx;
            y[base + j] = B4(select(select(exp(e) / sum, e - log(sum), kind == 5u), 0.0, nothing));
        }
        return;
    }
    var mean = 0.0;
    for (var j = 0u; j < len; j++) { mean += f32(x[base + j]); }
    mean = mean / f32(len);
    var var_ = 0.0;
    for (var j = 0u; j < len; j++) { let d = f32(x[base + j]) - mean; var_ += d * d; }
    let inv = 1.0 / sqrt(var_ / f32(len) + pf(3u));
    for (var j = 0u; j < len; j++) {
        var v = (f32(x[base + j]) - mean) * inv * f32(scale[j]);
        if (p[4] == 1u) { v += f32(shift[j]); }
        y[base + j] = B4(v);
    }
}
