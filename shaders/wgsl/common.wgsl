// Shared by every kernel: parameters arrive as u32 words (floats bit-cast), and 1-D work is
// spread over a 2-D grid of 64-wide workgroups so large tensors stay under the per-dimension
// dispatch limit.
@group(0) @binding(0) var<storage, read> p: array<u32>;

fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// Offset of flat output index `i` in a tensor whose row-major output shape sits at p[shape_at..+6]
// and whose per-axis element strides sit at p[stride_at..+6] (6-D, left-padded).
fn strided_offset(i: u32, shape_at: u32, stride_at: u32) -> u32 {
    var rem = i;
    var off = 0u;
    for (var k = 0u; k < 6u; k++) {
        let ax = 5u - k;
        let c = rem % p[shape_at + ax];
        rem = rem / p[shape_at + ax];
        off += c * p[stride_at + ax];
    }
    return off;
}

fn pf(i: u32) -> f32 {
    return bitcast<f32>(p[i]);
}

// NaN by the bits: WGSL lets compilers assume floats are finite, so x != x may fold away.
fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

// max, min and clamp that keep a NaN operand, as ONNX Runtime's kernels do (WGSL leaves
// their result on NaN to the implementation).
fn nmax(a: f32, b: f32) -> f32 {
    return select(select(max(a, b), b, is_nan(b)), a, is_nan(a));
}

fn nmin(a: f32, b: f32) -> f32 {
    return select(select(min(a, b), b, is_nan(b)), a, is_nan(a));
}

fn nclamp(x: f32, lo: f32, hi: f32) -> f32 {
    return select(clamp(x, lo, hi), x, is_nan(x));
}

fn activate(v: f32, kind: u32, lo: f32, hi: f32) -> f32 {
    if (kind == 1u) { return nmax(v, 0.0); }
    if (kind == 2u) { return nclamp(v, lo, hi); }
    if (kind == 3u) { return v / (1.0 + exp(-lo * v)); }
    if (kind == 4u) { return v * nclamp(v / 6.0 + 0.5, 0.0, 1.0); }
    return v;
}

// log(1 + e^x) without overflow, and by its series where e^-|x| is tiny (log(1 + e) in f32
// loses e's digits there).
fn softplus(x: f32) -> f32 {
    let e = exp(-abs(x));
    return nmax(x, 0.0) + select(log(1.0 + e), e * (1.0 - e * (0.5 - e / 3.0)), e < 1e-3);
}

// C's fmod: the remainder takes the dividend's sign; a finite x modulo an infinite y is x.
fn fmod_c(x: f32, y: f32) -> f32 {
    return select(x - y * trunc(x / y), x, abs(y) > 3.4028235e38 && abs(x) <= 3.4028235e38);
}

// Mod with fmod = 0: the remainder takes the divisor's sign (Python's %).
fn mod_floor(x: f32, y: f32) -> f32 {
    let r = fmod_c(x, y);
    return select(r, r + y, r != 0.0 && ((r < 0.0) != (y < 0.0)));
}
