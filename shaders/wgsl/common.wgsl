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

fn activate(v: f32, kind: u32, lo: f32, hi: f32) -> f32 {
    if (kind == 1u) { return max(v, 0.0); }
    if (kind == 2u) { return clamp(v, lo, hi); }
    return v;
}
