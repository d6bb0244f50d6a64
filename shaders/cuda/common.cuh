// Shared by every kernel: parameters arrive as a device array of u32 words (floats bit-cast),
// with the same layouts as the WGSL kernels, so one planner serves both GPU backends. Buffers
// are typed B1, B2, ... (typedefs prepended per launch: float, or h16 for f16 storage); kernels
// compute in f32 and convert at ld/st.
typedef unsigned int u32;

// f16 storage: 16 bits, converted with the hardware's cvt instructions (no cuda_fp16.h needed).
struct h16 { unsigned short bits; };
#ifdef __CUDACC_RTC__
__device__ __forceinline__ float h2f(unsigned short h) { float f; asm("{ cvt.f32.f16 %0, %1; }" : "=f"(f) : "h"(h)); return f; }
__device__ __forceinline__ unsigned short f2h(float f) { unsigned short h; asm("{ cvt.rn.f16.f32 %0, %1; }" : "=h"(h) : "f"(f)); return h; }
#else
// The CPU emulator (tests/cuda_emulator/prelude.h) converts in software.
__device__ __forceinline__ float h2f(unsigned short h) { return emu_h2f(h); }
__device__ __forceinline__ unsigned short f2h(float f) { return emu_f2h(f); }
#endif

__device__ __forceinline__ float ld(const float* p, u32 i) { return p[i]; }
__device__ __forceinline__ float ld(const h16* p, u32 i) { return h2f(p[i].bits); }
__device__ __forceinline__ void st(float* p, u32 i, float v) { p[i] = v; }
__device__ __forceinline__ void st(h16* p, u32 i, float v) { p[i].bits = f2h(v); }

__device__ __forceinline__ float pf(const u32* p, u32 i) { return __uint_as_float(p[i]); }

// max, min and clamp that keep a NaN operand, as ONNX Runtime's kernels do (fmaxf and fminf
// return the other operand).
__device__ __forceinline__ float nmax(float a, float b) { return a != a ? a : (b != b ? b : fmaxf(a, b)); }
__device__ __forceinline__ float nmin(float a, float b) { return a != a ? a : (b != b ? b : fminf(a, b)); }
__device__ __forceinline__ float nclamp(float x, float lo, float hi) { return x != x ? x : fminf(fmaxf(x, lo), hi); }

__device__ __forceinline__ float activate(float v, u32 kind, float lo, float hi) {
    if (kind == 1u) return nmax(v, 0.0f);
    if (kind == 2u) return nclamp(v, lo, hi);
    if (kind == 3u) return v / (1.0f + __expf(-lo * v));
    if (kind == 4u) return v * nclamp(v / 6.0f + 0.5f, 0.0f, 1.0f);
    return v;
}

__device__ __forceinline__ u32 flat_index() { return blockIdx.x * blockDim.x + threadIdx.x + blockIdx.y * gridDim.x * blockDim.x; }

// Mod with fmod = 0: the remainder takes the divisor's sign (Python's %).
__device__ __forceinline__ float mod_floor(float x, float y) {
    float r = fmodf(x, y);
    return (r != 0.0f && ((r < 0.0f) != (y < 0.0f))) ? r + y : r;
}

__device__ __forceinline__ float softplus(float x) { return x > 20.0f ? x : log1pf(expf(x)); }
