// Convolution, pooling and row-wise kernels. Parameter layouts match shaders/wgsl/{conv2d,
// pool,rows,matmul}.wgsl. The CUDA executable runs Matmul launches through cuBLAS where
// their strides allow (then bias_act applies bias and activation); matmul is the
// fallback for general views.

extern "C" __global__ void conv2d(const u32* p, const B1* x, const B2* w, const B3* bias, B4* y) {
    u32 C = p[1], H = p[2], W = p[3], M = p[4], OH = p[5], OW = p[6], KH = p[7], KW = p[8], G = p[15];
    u32 total = p[0] * M * OH * OW;
    u32 i = flat_index();
    if (i >= total) return;
    u32 ox = i % OW, oy = (i / OW) % OH, oc = (i / (OW * OH)) % M, img = i / (OW * OH * M);
    u32 cg = C / G, g = oc / (M / G);
    float acc = 0.0f;
    for (u32 ci = 0; ci < cg; ++ci) {
        u32 xc = (img * C + g * cg + ci) * H * W;
        u32 wc = (oc * cg + ci) * KH * KW;
        for (u32 ky = 0; ky < KH; ++ky) {
            int iy = (int)(oy * p[9] + ky * p[13]) - (int)p[11];
            if (iy < 0 || iy >= (int)H) continue;
            for (u32 kx = 0; kx < KW; ++kx) {
                int ix = (int)(ox * p[10] + kx * p[14]) - (int)p[12];
                if (ix < 0 || ix >= (int)W) continue;
                acc += ld(x, xc + (u32)iy * W + (u32)ix) * ld(w, wc + ky * KW + kx);
            }
        }
    }
    if (p[16] == 1u) acc += ld(bias, oc);
    st(y, i, activate(acc, p[17], pf(p, 18), pf(p, 19)));
}

// Unfolds convolution windows into GEMM columns over (D, H, W), zero outside the input:
// cols[n][c][kz][ky][kx][oz][oy][ox] = x[n][c][iz][iy][ix] with iz = oz*sd + kz*dd - pd, ...
// p: [total, C, D, H, W, KD, KH, KW, OD, OH, OW, sd, sh, sw, pd, ph, pw, dd, dh, dw], as in
// im2col.wgsl.
extern "C" __global__ void im2col(const u32* p, const B1* x, B2* cols) {
    u32 i = flat_index();
    if (i >= p[0]) return;
    // Digits of i from the fastest: ox, oy, oz, kx, ky, kz, then the (n, c) plane.
    u32 rest = i, digit[6];
    for (int a = 0; a < 6; ++a) {
        u32 size = p[10 - a];
        digit[a] = rest % size;
        rest /= size;
    }
    int iz = (int)(digit[2] * p[11] + digit[5] * p[17]) - (int)p[14];
    int iy = (int)(digit[1] * p[12] + digit[4] * p[18]) - (int)p[15];
    int ix = (int)(digit[0] * p[13] + digit[3] * p[19]) - (int)p[16];
    bool inside = iz >= 0 && iy >= 0 && ix >= 0 && iz < (int)p[2] && iy < (int)p[3] && ix < (int)p[4];
    st(cols, i, inside ? ld(x, ((rest * p[2] + (u32)iz) * p[3] + (u32)iy) * p[4] + (u32)ix) : 0.0f);
}

// p: as in pool.wgsl.
extern "C" __global__ void pool(const u32* p, const B1* x, B2* y) {
    u32 D = p[1], H = p[2], W = p[3], OD = p[4], OH = p[5], OW = p[6];
    u32 i = flat_index();
    if (i >= p[0] * OD * OH * OW) return;
    u32 ox = i % OW, oy = (i / OW) % OH, oz = (i / (OW * OH)) % OD, plane = i / (OW * OH * OD), kind = p[19];
    float acc = kind == 0u ? -3.4028235e38f : 0.0f;
    u32 count = 0, padded = 0;
    for (u32 kz = 0; kz < p[7]; ++kz) {
        int iz = (int)(oz * p[10] + kz * p[16]) - (int)p[13];
        for (u32 ky = 0; ky < p[8]; ++ky) {
            int iy = (int)(oy * p[11] + ky * p[17]) - (int)p[14];
            for (u32 kx = 0; kx < p[9]; ++kx) {
                int ix = (int)(ox * p[12] + kx * p[18]) - (int)p[15];
                if (iz < (int)(D + p[20]) && iy < (int)(H + p[21]) && ix < (int)(W + p[22])) padded++;
                if (iz < 0 || iy < 0 || ix < 0 || iz >= (int)D || iy >= (int)H || ix >= (int)W) continue;
                float v = ld(x, ((plane * D + (u32)iz) * H + (u32)iy) * W + (u32)ix);
                count++;
                acc = kind == 0u ? nmax(acc, v) : acc + v;
            }
        }
    }
    if (kind == 1u) acc /= (float)max(count, 1u);
    if (kind == 2u) acc /= (float)max(padded, 1u);
    st(y, i, acc);
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = nmax(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_min(float v) {
    for (int o = 16; o > 0; o >>= 1) v = nmin(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float warp_prod(float v) {
    for (int o = 16; o > 0; o >>= 1) v *= __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Row-wise reductions and normalisations, one warp per row: lanes stride the row (coalesced
// loads), then combine through shuffles. p: [rows, len, kind, eps_bits, flag] as in rows.wgsl
// (flag: layer norm has a shift; argmax/argmin select the last index on ties).
// kind: 0 mean, 1 sum, 2 max, 3 min, 4 softmax, 5 log-softmax, 6 layer norm, 7 sum of squares,
// 8 L1, 9 L2, 10 log-sum, 11 log-sum-exp, 12 product, 13 RMS norm, 14 argmax, 15 argmin, 16 softmax
// with all -inf rows giving zeros (attention).
// Launch 32 threads per row (blocks of a multiple of 32).
extern "C" __global__ void rows(const u32* p, const B1* x, const B2* scale, const B3* shift, B4* y) {
    u32 t = flat_index(), r = t / 32u, lane = t % 32u;
    if (r >= p[0]) return;  // whole warps: every lane of a warp has the same row
    u32 len = p[1], kind = p[2], base = r * len;
    const float inf = __int_as_float(0x7f800000);
    if (kind <= 3u || (kind >= 7u && kind <= 12u)) {
        float mx = -inf;
        if (kind == 11u) {
            for (u32 j = lane; j < len; j += 32u) mx = nmax(mx, ld(x, base + j));
            mx = warp_max(mx);
        }
        float acc = kind == 2u ? -inf : (kind == 3u ? inf : (kind == 12u ? 1.0f : 0.0f));
        for (u32 j = lane; j < len; j += 32u) {
            float v = ld(x, base + j);
            switch (kind) {
                case 0u: case 1u: case 10u: acc += v; break;
                case 2u: acc = nmax(acc, v); break;
                case 3u: acc = nmin(acc, v); break;
                case 7u: case 9u: acc += v * v; break;
                case 8u: acc += fabsf(v); break;
                case 11u: acc += expf(v - mx); break;
                default: acc *= v;
            }
        }
        acc = kind == 2u ? warp_max(acc) : (kind == 3u ? warp_min(acc) : (kind == 12u ? warp_prod(acc) : warp_sum(acc)));
        if (kind == 0u) acc /= (float)len;
        if (kind == 9u) acc = sqrtf(acc);
        if (kind == 10u) acc = logf(acc);
        if (kind == 11u) acc = mx + logf(acc);
        if (lane == 0u) st(y, r, acc);
        return;
    }
    if (kind == 14u || kind == 15u) {
        // Each lane's best over its elements, then the warp's; ties go to the first index, or
        // the last with the flag. `best` = len marks a lane with no element.
        bool last = p[4] == 1u;
        u32 best = len;
        float bv = 0.0f;
        for (u32 j = lane; j < len; j += 32u) {
            float v = ld(x, base + j);
            bool better = best == len || (kind == 14u ? v > bv : v < bv) || (last && v == bv);
            if (better) { best = j; bv = v; }
        }
        for (int o = 16; o > 0; o >>= 1) {
            float ov = __shfl_xor_sync(0xffffffffu, bv, o);
            u32 ob = __shfl_xor_sync(0xffffffffu, best, o);
            bool take = ob != len && (best == len || (kind == 14u ? ov > bv : ov < bv) || (ov == bv && (last ? ob > best : ob < best)));
            if (take) { best = ob; bv = ov; }
        }
        if (lane == 0u) st(y, r, (float)best);
        return;
    }
    if (kind == 4u || kind == 5u || kind == 16u) {
        float mx = -inf, sum = 0.0f;
        for (u32 j = lane; j < len; j += 32u) mx = nmax(mx, ld(x, base + j));
        mx = warp_max(mx);
        for (u32 j = lane; j < len; j += 32u) sum += expf(ld(x, base + j) - mx);
        sum = warp_sum(sum);
        // Kind 16 (attention): a row masked everywhere attends to nothing.
        bool nothing = kind == 16u && mx == -inf;
        for (u32 j = lane; j < len; j += 32u) {
            float e = ld(x, base + j) - mx;
            st(y, base + j, nothing ? 0.0f : (kind == 5u ? e - logf(sum) : expf(e) / sum));
        }
        return;
    }
    if (kind == 13u) {
        float ms = 0.0f;
        for (u32 j = lane; j < len; j += 32u) ms += ld(x, base + j) * ld(x, base + j);
        float inv = rsqrtf(warp_sum(ms) / (float)len + pf(p, 3));
        for (u32 j = lane; j < len; j += 32u) st(y, base + j, ld(x, base + j) * inv * ld(scale, j));
        return;
    }
    float mean = 0.0f, var = 0.0f;
    for (u32 j = lane; j < len; j += 32u) mean += ld(x, base + j);
    mean = warp_sum(mean) / (float)len;
    for (u32 j = lane; j < len; j += 32u) { float d = ld(x, base + j) - mean; var += d * d; }
    float inv = rsqrtf(warp_sum(var) / (float)len + pf(p, 3));
    for (u32 j = lane; j < len; j += 32u) {
        float v = (ld(x, base + j) - mean) * inv * ld(scale, j);
        if (p[4] == 1u) v += ld(shift, j);
        st(y, base + j, v);
    }
}

// Batched GEMM with the WGSL matmul's parameters: C[b] = alpha * A[b] * B[b] + beta * bias, then
// the fused activation, in one launch (cuBLAS needs a second, bias_act). Strides express
// transposes and batch broadcasting. p: [M, N, K, a_batch, a_rs, a_cs, b_batch, b_rs, b_cs,
// has_bias, bias_rs, bias_cs, alpha_bits, beta_bits, act, lo_bits, hi_bits, c_base, c_batch]:
// C[b] starts at c_base + b * c_batch (a Concat's output can be written in place).
// A 16x16 block computes a 64x64 tile of C, 4x4 outputs per thread in registers (rows ty + 16i,
// columns tx + 16j, so the stores of a row of threads are contiguous), over 16-deep slices of A
// and B staged in shared memory. Launch with 16x16 blocks on a (N/64, M/64, batch) grid.
#define MM_TILE 64
#define MM_DEPTH 16
extern "C" __global__ void matmul(const u32* p, const B1* a, const B2* bm, const B3* bias, B4* c) {
    __shared__ float as[MM_DEPTH][MM_TILE + 1];
    __shared__ float bs[MM_DEPTH][MM_TILE + 1];
    u32 m = p[0], n = p[1], k = p[2];
    u32 tx = threadIdx.x, ty = threadIdx.y, tid = ty * 16 + tx;
    u32 row0 = blockIdx.y * MM_TILE, col0 = blockIdx.x * MM_TILE, batch = blockIdx.z;
    u32 a0 = batch * p[3], b0 = batch * p[6];
    float acc[4][4];
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
    for (u32 t = 0; t < k; t += MM_DEPTH) {
        for (u32 e = tid; e < MM_TILE * MM_DEPTH; e += 256) {
            u32 r = e / MM_DEPTH, kk = e % MM_DEPTH, gr = row0 + r, gk = t + kk;
            as[kk][r] = (gr < m && gk < k) ? ld(a, a0 + gr * p[4] + gk * p[5]) : 0.0f;
        }
        for (u32 e = tid; e < MM_TILE * MM_DEPTH; e += 256) {
            u32 kk = e / MM_TILE, cc = e % MM_TILE, gk = t + kk, gc = col0 + cc;
            bs[kk][cc] = (gk < k && gc < n) ? ld(bm, b0 + gk * p[7] + gc * p[8]) : 0.0f;
        }
        __syncthreads();
        for (u32 kk = 0; kk < MM_DEPTH; ++kk) {
            float av[4], bv[4];
            for (int i = 0; i < 4; ++i) av[i] = as[kk][ty + 16 * i];
            for (int j = 0; j < 4; ++j) bv[j] = bs[kk][tx + 16 * j];
            for (int i = 0; i < 4; ++i)
                for (int j = 0; j < 4; ++j) acc[i][j] += av[i] * bv[j];
        }
        __syncthreads();
    }
    for (int i = 0; i < 4; ++i) {
        u32 row = row0 + ty + 16 * i;
        if (row >= m) continue;
        for (int j = 0; j < 4; ++j) {
            u32 col = col0 + tx + 16 * j;
            if (col >= n) continue;
            float v = pf(p, 12) * acc[i][j];
            if (p[9] == 1u) v += pf(p, 13) * ld(bias, row * p[10] + col * p[11]);
            st(c, p[17] + batch * p[18] + row * n + col, activate(v, p[14], pf(p, 15), pf(p, 16)));
        }
    }
}

// What a Matmul run through cuBLAS still owes: C += beta * bias (row and column strides, so a
// per-channel or per-column bias broadcasts), then the fused activation.
// p: [total, n, m*n, has_bias, bias_rs, bias_cs, beta_bits, act, lo_bits, hi_bits, c_base,
// c_batch]: element i of the product is C[c_base + (i / (m*n)) * c_batch + i % (m*n)].
extern "C" __global__ void bias_act(const u32* p, const B1* bias, B2* c) {
    u32 i = flat_index();
    if (i >= p[0]) return;
    u32 col = i % p[1], row = (i % p[2]) / p[1];
    u32 at = p[10] + (i / p[2]) * p[11] + i % p[2];
    float v = ld(c, at);
    if (p[3] == 1u) v += pf(p, 6) * ld(bias, row * p[4] + col * p[5]);
    st(c, at, activate(v, p[7], pf(p, 8), pf(p, 9)));
}

// GridSample over 2 spatial dims, as grid_sample.wgsl (and the CPU kernel): y[b, c, oy, ox]
// samples x[b, c] at grid[b, oy, ox] = (x, y) in [-1, 1]; nearest (ties to even), linear or
// cubic (Keys' a = -0.75) taps; zeros, border or reflection padding.
// p: [n, C, H, W, Ho, Wo, mode (0 nearest, 1 linear, 2 cubic), padding (0 zeros, 1 border,
//     2 reflection), align_corners]
__device__ float reflect_into(float v, float lo, float hi) {
    float range = hi - lo;
    if (range <= 0.0f) return lo;
    if (v >= lo && v <= hi) return v;
    bool from_lo = v < lo;
    float dx = from_lo ? lo - v : v - hi;
    float flips = floorf(dx / range), rem = dx - flips * range;
    bool even = ((unsigned long long)flips % 2ull) == 0ull;
    return even == from_lo ? lo + rem : hi - rem;
}

__device__ float cubic_w(float t, u32 k) {
    const float a = -0.75f;
    float s = k == 0u ? t + 1.0f : (k == 1u ? t : (k == 2u ? 1.0f - t : 2.0f - t));
    if (k == 1u || k == 2u) return ((a + 2.0f) * s - (a + 3.0f)) * s * s + 1.0f;
    return ((a * s - 5.0f * a) * s + 8.0f * a) * s - 4.0f * a;
}

extern "C" __global__ void grid_sample(const u32* p, const B1* x, const B2* grid, B3* y) {
    u32 i = flat_index();
    if (i >= p[0]) return;
    u32 c_n = p[1], h = p[2], w = p[3], ho = p[4], wo = p[5], mode = p[6], padding = p[7];
    bool align = p[8] != 0u;
    u32 ox = i % wo, oy = (i / wo) % ho, plane = i / (wo * ho), b = plane / c_n;
    u32 g = ((b * ho + oy) * wo + ox) * 2u;
    float dims[2] = {(float)w, (float)h}, v[2];
    for (int a = 0; a < 2; ++a) {
        float d = dims[a], lo = align ? 0.0f : -0.5f, hi = align ? d - 1.0f : d - 0.5f;
        float c = align ? (ld(grid, g + a) + 1.0f) / 2.0f * (d - 1.0f) : ((ld(grid, g + a) + 1.0f) * d - 1.0f) / 2.0f;
        if (mode == 0u) c = rintf(c);
        if (c < lo || c > hi) {
            if (padding == 1u) c = fminf(fmaxf(c, 0.0f), d - 1.0f);
            if (padding == 2u) c = reflect_into(c, lo, hi);
        }
        v[a] = c;
    }
    u32 taps = mode == 0u ? 1u : (mode == 1u ? 2u : 4u);
    float acc = 0.0f;
    for (u32 ty = 0; ty < taps; ++ty) {
        for (u32 tx = 0; tx < taps; ++tx) {
            int idx[2];
            float wt = 1.0f;
            u32 k[2] = {tx, ty};
            for (int a = 0; a < 2; ++a) {
                float f = floorf(v[a]);
                float ti = mode == 0u ? truncf(v[a]) : (mode == 1u ? f + (float)k[a] : f - 1.0f + (float)k[a]);
                float tw = mode == 0u ? 1.0f : (mode == 1u ? (k[a] == 0u ? 1.0f - (v[a] - f) : v[a] - f) : cubic_w(v[a] - f, k[a]));
                int d = a == 0 ? (int)w : (int)h, ii = (int)ti;
                float lo = align ? 0.0f : -0.5f, hi = align ? (float)d - 1.0f : (float)d - 0.5f;
                if (padding == 0u) idx[a] = (ii >= 0 && ii < d) ? ii : -1;
                else if (padding == 1u) idx[a] = max(0, min(ii, d - 1));
                else idx[a] = max(0, min((int)reflect_into((float)ii, lo, hi), d - 1));
                wt = a == 0 ? tw : tw * wt;
            }
            if (idx[0] >= 0 && idx[1] >= 0) acc += wt * ld(x, (plane * h + (u32)idx[1]) * w + (u32)idx[0]);
        }
    }
    st(y, i, acc);
}
