// Shared by every kernel: parameters arrive as a device array of u32 words (floats bit-cast),
// with the same layouts as the WGSL kernels, so one planner serves both GPU backends.
typedef unsigned int u32;

__device__ __forceinline__ float pf(const u32* p, u32 i) { return __uint_as_float(p[i]); }

__device__ __forceinline__ float activate(float v, u32 kind, float lo, float hi) {
    if (kind == 1u) return fmaxf(v, 0.0f);
    if (kind == 2u) return fminf(fmaxf(v, lo), hi);
    return v;
}

__device__ __forceinline__ u32 flat_index() { return blockIdx.x * blockDim.x + threadIdx.x + blockIdx.y * gridDim.x * blockDim.x; }

__device__ __forceinline__ float erf_approx(float v) { return erff(v); }
