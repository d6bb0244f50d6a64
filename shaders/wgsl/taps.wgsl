// Weighted taps along one axis (Resize, one axis at a time): y[o, j, i] = sum_t w[j, t] *
// x[o, src[j, t], i], the table holding (src, w) pairs as floats; a negative src marks a position
// outside the input, which takes the extrapolation value.
// p: [n, src_len, count, inner, taps, extrapolation (f32 bits)]
@group(0) @binding(1) var<storage, read> x: array<B1>;
@group(0) @binding(2) var<storage, read> table: array<B2>;
@group(0) @binding(3) var<storage, read_write> y: array<B3>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    let inner = p[3];
    let inn = i % inner;
    let j = (i / inner) % p[2];
    let o = i / (inner * p[2]);
    var acc = 0.0;
    for (var t = 0u; t < p[4]; t++) {
        let e = (j * p[4] + t) * 2u;
        let s = f32(table[e]);
        if (s < 0.0) {
            acc = bitcast<f32>(p[5]);
            break;
        }
        let w = f32(table[e + 1u]);
        // Padding taps have weight 0 and must not turn an infinite neighbour into NaN.
        if (w != 0.0) {
            acc += w * f32(x[(o * p[1] + u32(s)) * inner + inn]);
        }
    }
    y[i] = B3(acc);
}
