// The emulator's cuBLAS: GEMMs in double precision on the host (the reference a device's f32
// result is judged by), queued on the handle's stream like any other work, so they join
// captured graphs.
#include "prelude.h"
#include "emulator.h"

#include <stdio.h>

#include <algorithm>

extern "C" {

struct Blas {
    void* stream = nullptr;
    int math_mode = 0;
};
int cublasCreate_v2(void** h) { *h = new Blas(); return 0; }
int cublasDestroy_v2(void* h) { delete static_cast<Blas*>(h); return 0; }
int cublasSetStream_v2(void* h, void* s) { static_cast<Blas*>(h)->stream = s; return 0; }
int cublasGetStream_v2(void* h, void** s) { *s = static_cast<Blas*>(h)->stream; return 0; }
int cublasSetMathMode(void* h, int mode) { static_cast<Blas*>(h)->math_mode = mode; return 0; }
int cublasGetMathMode(void* h, int* mode) { *mode = static_cast<Blas*>(h)->math_mode; return 0; }
int cublasSetPointerMode_v2(void*, int mode) { return mode == 0 ? 0 : 15; }
int cublasGetPointerMode_v2(void*, int* mode) { *mode = 0; return 0; }
int cublasSetWorkspace_v2(void*, void*, size_t) { return 0; }

// TF32 keeps 10 explicit mantissa bits (round to nearest even), as the tensor cores read inputs.
static inline float to_tf32(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0xfffu + ((u >> 13) & 1u)) & 0xffffe000u;
    memcpy(&x, &u, 4);
    return x;
}

// Element types cuBLAS names: CUDA_R_32F = 0, CUDA_R_16F = 2.
static inline float load(const void* p, long i, int type) {
    return type == 2 ? emu_h2f(static_cast<const unsigned short*>(p)[i]) : static_cast<const float*>(p)[i];
}
static inline void store(void* p, long i, int type, float v) {
    if (type == 2) static_cast<unsigned short*>(p)[i] = emu_f2h(v);
    else static_cast<float*>(p)[i] = v;
}

// Column-major C = alpha op(A) op(B) + beta C, batched by strides (in elements); C is not read
// when beta == 0. Accumulates in double: the reference the device's f32 result is judged by.
static void gemm(bool ta, bool tb, int m, int n, int k, float alpha, const void* a, int at, long lda, long sa, const void* b, int bt, long ldb, long sb, float beta, void* c, int ct, long ldc, long sc, int batch, bool tf32) {
    for (int z = 0; z < batch; z++)
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                double acc = 0;
                for (int p = 0; p < k; p++) {
                    float x = load(a, z * sa + (ta ? p + i * lda : i + p * lda), at);
                    float y = load(b, z * sb + (tb ? j + p * ldb : p + j * ldb), bt);
                    if (tf32) x = to_tf32(x), y = to_tf32(y);
                    acc += double(x) * double(y);
                }
                long at_c = z * sc + i + j * ldc;
                float v = alpha * float(acc);
                store(c, at_c, ct, beta == 0.0f ? v : v + beta * load(c, at_c, ct));
            }
}

static int enqueue_gemm(void* h, int ta, int tb, int m, int n, int k, const float* alpha, const void* a, int at, int lda, long long sa, const void* b, int bt, int ldb, long long sb, const float* beta, void* c, int ct, int ldc, long long sc, int batch, bool tf32) {
    if (m < 0 || n < 0 || k < 0 || batch < 0 || lda < std::max(1, ta ? k : m) || ldb < std::max(1, tb ? n : k) || ldc < std::max(1, m)) return 7;  // INVALID_VALUE
    float al = *alpha, be = *beta;
    if (emu::tracing()) fprintf(stderr, "emulator: cublas gemm %c%c m=%d n=%d k=%d batch=%d%s%s%s\n", ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, batch, at == 2 ? " f16" : "", tf32 ? " tf32" : "", emu::capturing(static_cast<Blas*>(h)->stream) ? " [captured]" : "");
    emu::enqueue(static_cast<Blas*>(h)->stream, [=] { gemm(ta != 0, tb != 0, m, n, k, al, a, at, lda, sa, b, bt, ldb, sb, be, c, ct, ldc, sc, batch, tf32); });
    return 0;
}

int cublasSgemm_v2(void* h, int ta, int tb, int m, int n, int k, const float* alpha, const float* a, int lda, const float* b, int ldb, const float* beta, float* c, int ldc) {
    return enqueue_gemm(h, ta, tb, m, n, k, alpha, a, 0, lda, 0, b, 0, ldb, 0, beta, c, 0, ldc, 0, 1, static_cast<Blas*>(h)->math_mode == 3);
}
int cublasSgemmStridedBatched(void* h, int ta, int tb, int m, int n, int k, const float* alpha, const float* a, int lda, long long sa, const float* b, int ldb, long long sb, const float* beta, float* c, int ldc, long long sc, int batch) {
    return enqueue_gemm(h, ta, tb, m, n, k, alpha, a, 0, lda, sa, b, 0, ldb, sb, beta, c, 0, ldc, sc, batch, static_cast<Blas*>(h)->math_mode == 3);
}
// The combinations cuBLAS documents for compute type 68 (CUBLAS_COMPUTE_32F): f32 x f32 -> f32
// and f16 x f16 -> f16 or f32; 77 (CUBLAS_COMPUTE_32F_FAST_TF32) only for f32. Scalars are f32.
int cublasGemmStridedBatchedEx(void* h, int ta, int tb, int m, int n, int k, const void* alpha, const void* a, int at, int lda, long long sa, const void* b, int bt, int ldb, long long sb, const void* beta, void* c, int ct, int ldc, long long sc, int batch, int compute, int) {
    bool f32 = at == 0 && bt == 0 && ct == 0, f16 = at == 2 && bt == 2 && (ct == 2 || ct == 0);
    if (!((compute == 68 && (f32 || f16)) || (compute == 77 && f32))) return 15;  // NOT_SUPPORTED
    return enqueue_gemm(h, ta, tb, m, n, k, static_cast<const float*>(alpha), a, at, lda, sa, b, bt, ldb, sb, static_cast<const float*>(beta), c, ct, ldc, sc, batch, compute == 77);
}
int cublasGemmEx(void* h, int ta, int tb, int m, int n, int k, const void* alpha, const void* a, int at, int lda, const void* b, int bt, int ldb, const void* beta, void* c, int ct, int ldc, int compute, int algo) {
    return cublasGemmStridedBatchedEx(h, ta, tb, m, n, k, alpha, a, at, lda, 0, b, bt, ldb, 0, beta, c, ct, ldc, 0, 1, compute, algo);
}

}  // extern "C"
