// Gather along one axis: out[o, j, i] = data[o, idx[j], i] (negative indices wrap).
// p: [n, axis_len, idx_count, inner]
@group(0) @binding(1) var<storage, read> data: array<B1>;
@group(0) @binding(2) var<storage, read> idx: array<B2>;
@group(0) @binding(3) var<storage, read_write> y: array<B3>;

@compute @workgroup_size(WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    let inner = p[3];
    let count = p[2];
    let inn = i % inner;
    let j = (i / inner) % count;
    let o = i / (inner * count);
    var k = i32(f32(idx[j]));
    if (k < 0) { k += i32(p[1]); }
    let kk = u32(clamp(k, 0, i32(p[1]) - 1));
    y[i] = B3(data[(o * p[1] + kk) * inner + inn]);
}
