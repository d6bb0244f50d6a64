// Element-wise unary op; OP is an expression in x (and the float params a = pf(1), b = pf(2)).
// p: [n, a_bits, b_bits]
@group(0) @binding(1) var<storage, read> src: array<B1>;
@group(0) @binding(2) var<storage, read_write> dst: array<B2>;

fn erf_approx(v: f32) -> f32 {
    // Abramowitz & Stegun 7.1.26 (max abs error 1.5e-7).
    let ax = abs(v);
    let t = 1.0 / (1.0 + 0.3275911 * ax);
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    let r = 1.0 - poly * exp(-ax * ax);
    return select(r, -r, v < 0.0);
}

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    let x = f32(src[i]);
    let a = pf(1u);
    let b = pf(2u);
    dst[i] = B2({{OP}});
}
