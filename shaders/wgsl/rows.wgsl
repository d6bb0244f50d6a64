// Row-wise ops over the contiguous trailing block, one row per thread:
// kind 0 mean, 1 sum, 2 max, 3 min, 4 softmax, 5 log-softmax, 6 layer norm (eps = pf(3)).
// p: [rows, len, kind, eps_bits, has_bias]
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
    if (kind <= 3u) {
        var acc = select(0.0, f32(x[base]), kind >= 2u);
        for (var j = 0u; j < len; j++) {
            let v = f32(x[base + j]);
            if (kind <= 1u) { acc += v; } else if (kind == 2u) { acc = max(acc, v); } else { acc = min(acc, v); }
        }
        if (kind == 0u) { acc = acc / f32(len); }
        y[r] = B4(acc);
        return;
    }
    if (kind <= 5u) {
        var mx = -3.4028235e38;
        for (var j = 0u; j < len; j++) { mx = max(mx, f32(x[base + j])); }
        var sum = 0.0;
        for (var j = 0u; j < len; j++) { sum += exp(f32(x[base + j]) - mx); }
        for (var j = 0u; j < len; j++) {
            let e = f32(x[base + j]) - mx;
            y[base + j] = B4(select(exp(e) / sum, e - log(sum), kind == 5u));
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
