// Gather along one axis: out[o, j, i] = data[o, idx[j], i] (negative indices wrap).
// An index outside [-axis_len, axis_len) writes this launch's check id into `bad` (read back
// with the outputs: the run fails, as on the CPU); the read stays clamped inside the tensor.
// p: [n, axis_len, idx_count, inner, check_id]
@group(0) @binding(1) var<storage, read> data: array<B1>;
@group(0) @binding(2) var<storage, read> idx: array<B2>;
@group(0) @binding(3) var<storage, read_write> y: array<B3>;
@group(0) @binding(4) var<storage, read_write> bad: array<B4>;

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
    if (k < 0 || k >= i32(p[1])) { bad[0] = B4(f32(p[4])); }
    let kk = u32(clamp(k, 0, i32(p[1]) - 1));
    y[i] = B3(data[(o * p[1] + kk) * inner + inn]);
}
