// Element-wise kernels: strided copy, unary (UNARY_OP in x, a, b), broadcasting binary
// (BINARY_OP in x, y),
// and Where. Parameter layouts match shaders/wgsl/{copy,unary,binary,where}.wgsl.

extern "C" __global__ void copy_f32(const u32* p, const float* src, float* dst) {
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
    dst[d] = src[s];
}

extern "C" __global__ void unary_f32(const u32* p, const float* src, float* dst) {
    u32 i = flat_index();
    if (i >= p[0]) return;
    float x = src[i];
    float a = pf(p, 1), b = pf(p, 2);
    (void)a; (void)b;
    dst[i] = (UNARY_OP);
}

extern "C" __global__ void binary_f32(const u32* p, const float* lhs, const float* rhs, float* dst) {
    u32 i = flat_index();
    if (i >= p[0]) return;
    u32 rem = i, ia = 0, ib = 0;
    for (int k = 5; k >= 0; --k) {
        u32 c = rem % p[1 + k];
        rem /= p[1 + k];
        ia += c * p[7 + k];
        ib += c * p[13 + k];
    }
    float x = lhs[ia], y = rhs[ib];
    dst[i] = (BINARY_OP);
}

extern "C" __global__ void where_f32(const u32* p, const float* cond, const float* xs, const float* ys, float* dst) {
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
    dst[i] = cond[ic] != 0.0f ? xs[ix] : ys[iy];
}

extern "C" __global__ void gather_f32(const u32* p, const float* data, const float* idx, float* y) {
    u32 i = flat_index();
    if (i >= p[0]) return;
    u32 inner = p[3], count = p[2], axis = p[1];
    u32 inn = i % inner, j = (i / inner) % count, o = i / (inner * count);
    int k = (int)idx[j];
    if (k < 0) k += (int)axis;
    k = max(0, min(k, (int)axis - 1));
    y[i] = data[(o * axis + (u32)k) * inner + inn];
}
