// Cumulative sum or product along one axis, one thread per lane (outer x inner): y[o, j, i] =
// x[o, 0, i] (+ or *) ... x[o, j, i]; exclusive leaves a position's own element out, reverse
// runs from the end.
// p: [lanes, len, inner, product, exclusive, reverse]
@group(0) @binding(1) var<storage, read> x: array<B1>;
@group(0) @binding(2) var<storage, read_write> y: array<B2>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let lane = flat_index(gid, nwg);
    if (lane >= p[0]) { return; }
    let len = p[1];
    let inner = p[2];
    let base = (lane / inner) * len * inner + lane % inner;
    var acc = select(0.0, 1.0, p[3] != 0u);
    for (var j = 0u; j < len; j++) {
        let at = base + select(j, len - 1u - j, p[5] != 0u) * inner;
        let v = f32(x[at]);
        if (p[4] != 0u) { y[at] = B2(acc); }
        acc = select(acc + v, acc * v, p[3] != 0u);
        if (p[4] == 0u) { y[at] = B2(acc); }
    }
}
