// TopK along one axis by ranks, one thread per input element: the element's place in its lane
// (outer x inner) sorted best first is the count of better elements, plus that of equal ones at
// lower indices (ONNX keeps the lower index first); places below k write the value and its index.
// p: [n, len, inner, k, largest]
@group(0) @binding(1) var<storage, read> x: array<B1>;
@group(0) @binding(2) var<storage, read_write> values: array<B2>;
@group(0) @binding(3) var<storage, read_write> indices: array<B3>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    let len = p[1];
    let inner = p[2];
    let k = p[3];
    let j = (i / inner) % len;
    let base = i - j * inner;
    let v = f32(x[i]);
    var place = 0u;
    for (var m = 0u; m < len; m++) {
        let w = f32(x[base + m * inner]);
        // NaN ranks above every number (first when largest, last when smallest), as in ONNX Runtime.
        let wn = is_nan(w);
        let vn = is_nan(v);
        let greater = (wn && !vn) || (!wn && !vn && w > v);
        let less = (vn && !wn) || (!wn && !vn && w < v);
        let same = (wn && vn) || (!wn && !vn && w == v);
        let better = select(less, greater, p[4] != 0u);
        if (better || (same && m < j)) { place += 1u; }
    }
    if (place < k) {
        let at = (base / (len * inner)) * k * inner + place * inner + base % inner;
        values[at] = B2(v);
        indices[at] = B3(f32(j));
    }
}
