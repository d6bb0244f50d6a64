// GridSample over 2 spatial dims: y[b, c, oy, ox] samples x[b, c] where grid[b, oy, ox] = (x, y)
// in [-1, 1] points; nearest (ties to even), linear or cubic (Keys' a = -0.75) taps; zeros,
// border or reflection padding; as the CPU kernel (backend/cpu/grid_sample.rs).
// p: [n, C, H, W, Ho, Wo, mode (0 nearest, 1 linear, 2 cubic), padding (0 zeros, 1 border,
//     2 reflection), align_corners]
@group(0) @binding(1) var<storage, read> x: array<B1>;
@group(0) @binding(2) var<storage, read> grid: array<B2>;
@group(0) @binding(3) var<storage, read_write> y: array<B3>;

// Reflects v off the nearer border of [lo, hi] until it lies inside.
fn reflect_into(v: f32, lo: f32, hi: f32) -> f32 {
    let range = hi - lo;
    if (range <= 0.0) { return lo; }
    if (v >= lo && v <= hi) { return v; }
    let from_lo = v < lo;
    let dx = select(v - hi, lo - v, from_lo);
    let flips = floor(dx / range);
    let rem = dx - flips * range;
    let even = (u32(flips) % 2u) == 0u;
    return select(hi - rem, lo + rem, even == from_lo);
}

fn lo_of(d: f32) -> f32 { return select(-0.5, 0.0, p[8] != 0u); }
fn hi_of(d: f32) -> f32 { return select(d - 0.5, d - 1.0, p[8] != 0u); }

// The source coordinate along a dim of size d for normalised g (rounded for nearest, padded).
fn coord(g: f32, d: f32) -> f32 {
    var v = select(((g + 1.0) * d - 1.0) / 2.0, (g + 1.0) / 2.0 * (d - 1.0), p[8] != 0u);
    if (p[6] == 0u) { v = round(v); }
    if (v < lo_of(d) || v > hi_of(d)) {
        if (p[7] == 1u) { v = clamp(v, 0.0, d - 1.0); }
        if (p[7] == 2u) { v = reflect_into(v, lo_of(d), hi_of(d)); }
    }
    return v;
}

// Where integer tap i of a dim of size d reads; -1 reads a zero.
fn pixel(i: i32, d: u32) -> i32 {
    if (p[7] == 0u) { return select(-1, i, i >= 0 && i < i32(d)); }
    if (p[7] == 1u) { return clamp(i, 0, i32(d) - 1); }
    return clamp(i32(reflect_into(f32(i), lo_of(f32(d)), hi_of(f32(d)))), 0, i32(d) - 1);
}

fn cubic_w(t: f32, k: u32) -> f32 {
    let a = -0.75;
    let s = select(select(select(2.0 - t, 1.0 - t, k == 2u), t, k == 1u), t + 1.0, k == 0u);
    if (k == 1u || k == 2u) { return ((a + 2.0) * s - (a + 3.0)) * s * s + 1.0; }
    return ((a * s - 5.0 * a) * s + 8.0 * a) * s - 4.0 * a;
}

// Tap k of a coordinate: (index, weight).
fn tap(v: f32, k: u32) -> vec2<f32> {
    let f = floor(v);
    if (p[6] == 0u) { return vec2<f32>(trunc(v), 1.0); }
    if (p[6] == 1u) { return select(vec2<f32>(f + 1.0, v - f), vec2<f32>(f, 1.0 - (v - f)), k == 0u); }
    return vec2<f32>(f - 1.0 + f32(k), cubic_w(v - f, k));
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    let c_n = p[1];
    let h = p[2];
    let w = p[3];
    let ho = p[4];
    let wo = p[5];
    let ox = i % wo;
    let oy = (i / wo) % ho;
    let plane = i / (wo * ho);
    let b = plane / c_n;
    let g = ((b * ho + oy) * wo + ox) * 2u;
    let vx = coord(f32(grid[g]), f32(w));
    let vy = coord(f32(grid[g + 1u]), f32(h));
    let taps = select(select(4u, 2u, p[6] == 1u), 1u, p[6] == 0u);
    var acc = 0.0;
    for (var ty = 0u; ty < taps; ty++) {
        let ty_ = tap(vy, ty);
        let py = pixel(i32(ty_.x), h);
        for (var tx = 0u; tx < taps; tx++) {
            let tx_ = tap(vx, tx);
            let px = pixel(i32(tx_.x), w);
            if (py >= 0 && px >= 0) {
                acc += ty_.y * tx_.y * f32(x[(plane * h + u32(py)) * w + u32(px)]);
            }
        }
    }
    y[i] = B3(acc);
}
