// Element-wise kernels: strided copy, unary (UNARY_OP in x, a, b), broadcasting binary
// (BINARY_OP in x, y),
// and Where. Parameter layouts match shaders/wgsl/{copy,unary,binary,where}.wgsl.

extern "C" __global__ void copy(const u32* p, const B1* src, B2* dst) {
    u32 i = flat_index();
    if (i >= p[0]) return;
    u32 rem = i;
    int s = (int)p[1], d = (int)p[2];
    for (int k = 5; k >= 0; --k) {
        u32 size = p[3 + k];
        int c = (int)(rem % size);
        rem /= size;
        s += c * (int)p[9 + k];
        d += c * (int)p[15 + k];
    }
    st(dst, (u32)d, ld(src, (u32)s));
}

extern "C" __global__ void unary(const u32* p, const B1* src, B2* dst) {
    u32 i = flat_index();
    if (i >= p[0]) return;
    float x = ld(src, i);
    float a = pf(p, 1), b = pf(p, 2);
    (void)a; (void)b;
    st(dst, i, (UNARY_OP));
}

// With a check id (p[19]: integer tensors on f32 carriers), a result beyond ±2^24 writes the id
// into `bad`, as in binary.wgsl.
extern "C" __global__ void binary(const u32* p, const B1* lhs, const B2* rhs, B3* dst, B4* bad) {
    u32 i = flat_index();
    if (i >= p[0]) return;
    u32 rem = i, ia = 0, ib = 0;
    for (int k = 5; k >= 0; --k) {
        u32 c = rem % p[1 + k];
        rem /= p[1 + k];
        ia += c * p[7 + k];
        ib += c * p[13 + k];
    }
    float x = ld(lhs, ia), y = ld(rhs, ib);
    float r = (BINARY_OP);
    if (p[19] != 0u && fabsf(r) > 16777216.0f) st(bad, 0, (float)p[19]);
    st(dst, i, r);
}

extern "C" __global__ void select_where(const u32* p, const B1* cond, const B2* xs, const B3* ys, B4* dst) {
    u32 i = flat_index();
    if (i >= p[0]) return;
    u32 rem = i, ic = 0, ix = 0, iy = 0;
    for (int k = 5; k >= 0; --k) {
        u32 c = rem % p[1 + k];
        rem /= p[1 + k];
        ic += c * p[7 + k];
        ix += c * p[13 + k];
        iy += c * p[19 + k];
    }
    st(dst, i, ld(cond, ic) != 0.0f ? ld(xs, ix) : ld(ys, iy));
}

// An index out of range writes the launch's check id (p[4]) into `bad`, as in gather.wgsl.
extern "C" __global__ void gather(const u32* p, const B1* data, const B2* idx, B3* y, B4* bad) {
    u32 i = flat_index();
    if (i >= p[0]) return;
    u32 inner = p[3], count = p[2], axis = p[1];
    u32 inn = i % inner, j = (i / inner) % count, o = i / (inner * count);
    int k = (int)ld(idx, j);
    if (k < 0) k += (int)axis;
    if (k < 0 || k >= (int)axis) st(bad, 0, (float)p[4]);
    k = max(0, min(k, (int)axis - 1));
    st(y, i, ld(data, (o * axis + (u32)k) * inner + inn));
}

// Weighted taps along one axis (Resize, one axis at a time): y[o, j, i] = sum_t w[j, t] *
// x[o, src[j, t], i] from a table of (src, w) pairs; a negative src takes the extrapolation value.
// p: [n, src_len, count, inner, taps, extrapolation (f32 bits)]
extern "C" __global__ void taps(const u32* p, const B1* x, const B2* table, B3* y) {
    u32 i = flat_index();
    if (i >= p[0]) return;
    u32 inner = p[3], count = p[2], n_taps = p[4];
    u32 inn = i % inner, j = (i / inner) % count, o = i / (inner * count);
    float acc = 0.0f;
    for (u32 t = 0; t < n_taps; ++t) {
        u32 e = (j * n_taps + t) * 2u;
        float s = ld(table, e);
        if (s < 0.0f) {
            acc = pf(p, 5);
            break;
        }
        float w = ld(table, e + 1u);
        // Padding taps have weight 0 and must not turn an infinite neighbour into NaN.
        if (w != 0.0f) acc += w * ld(x, (o * p[1] + (u32)s) * inner + inn);
    }
    st(y, i, acc);
}

// Cumulative sum or product along one axis, one thread per lane (outer x inner); exclusive
// leaves a position's own element out, reverse runs from the end.
// p: [lanes, len, inner, product, exclusive, reverse]
extern "C" __global__ void scan(const u32* p, const B1* x, B2* y) {
    u32 lane = flat_index();
    if (lane >= p[0]) return;
    u32 len = p[1], inner = p[2];
    u32 base = (lane / inner) * len * inner + lane % inner;
    bool product = p[3] != 0u, exclusive = p[4] != 0u, reverse = p[5] != 0u;
    float acc = product ? 1.0f : 0.0f;
    for (u32 j = 0; j < len; ++j) {
        u32 at = base + (reverse ? len - 1u - j : j) * inner;
        float v = ld(x, at);
        if (exclusive) st(y, at, acc);
        acc = product ? acc * v : acc + v;
        if (!exclusive) st(y, at, acc);
    }
}

// p: as in topk.wgsl.
extern "C" __global__ void topk(const u32* p, const B1* x, B2* values, B3* indices) {
    u32 i = flat_index();
    if (i >= p[0]) return;
    u32 len = p[1], inner = p[2], k = p[3];
    u32 j = (i / inner) % len, base = i - j * inner;
    bool largest = p[4] != 0u;
    float v = ld(x, i);
    u32 place = 0;
    for (u32 m = 0; m < len; ++m) {
        float w = ld(x, base + m * inner);
        // NaN ranks above every number (first when largest, last when smallest), as in ONNX Runtime.
        bool wn = w != w, vn = v != v;
        bool greater = (wn && !vn) || w > v, less = (vn && !wn) || w < v, same = (wn && vn) || w == v;
        if ((largest ? greater : less) || (same && m < j)) place++;
    }
    if (place < k) {
        u32 at = (base / (len * inner)) * k * inner + place * inner + base % inner;
        st(values, at, v);
        st(indices, at, (float)j);
    }
}

// GatherElements / ScatterElements along one axis, over the index tensor's elements: gather
// c[i] = a[at], scatter c[at] = a[i], where `at` has i's coordinates except on the axis (idx[i]).
// p: [n, shape[6] (of idx), strides[6] (of the other tensor; 0 on the axis), axis_len,
//     axis_stride, scatter, check_id] (an index out of range writes check_id into `bad`)
extern "C" __global__ void elements(const u32* p, const B1* a, const B2* idx, B3* c, B4* bad) {
    u32 i = flat_index();
    if (i >= p[0]) return;
    u32 rem = i, at = 0;
    for (int k = 5; k >= 0; --k) {
        at += (rem % p[1 + k]) * p[7 + k];
        rem /= p[1 + k];
    }
    int len = (int)p[13], k = (int)ld(idx, i);
    if (k < 0) k += len;
    if (k < 0 || k >= len) st(bad, 0, (float)p[16]);
    at += (u32)max(0, min(k, len - 1)) * p[14];
    if (p[15]) st(c, at, ld(a, i));
    else st(c, i, ld(a, at));
}

// GatherND / ScatterND (batch_dims 0): index tuple j (q integers) picks a slice of `inner`
// elements; over i = j * inner + e: gather c[i] = a[at], scatter c[at] = a[i].
// p: [n, q, inner, dims[6] (of the first q axes), strides[6] (of those axes), scatter, check_id]
extern "C" __global__ void nd(const u32* p, const B1* a, const B2* idx, B3* c, B4* bad) {
    u32 i = flat_index();
    if (i >= p[0]) return;
    u32 q = p[1], j = i / p[2], at = i % p[2];
    for (u32 t = 0; t < q; ++t) {
        int len = (int)p[3 + t], k = (int)ld(idx, j * q + t);
        if (k < 0) k += len;
        if (k < 0 || k >= len) st(bad, 0, (float)p[16]);
        at += (u32)max(0, min(k, len - 1)) * p[9 + t];
    }
    if (p[15]) st(c, at, ld(a, i));
    else st(c, i, ld(a, at));
}
