// Included before every CUDA C unit the emulator compiles with g++: CUDA's language extensions
// and device intrinsics expressed in C++. The thread coordinates and barriers come from the
// emulator runtime (runtime.cpp), which runs each block's threads as fibers on one OS thread.
#pragma once
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <atomic>
#include <tuple>
#include <type_traits>
#include <utility>

struct uint3 { unsigned x, y, z; };
struct dim3 { unsigned x, y, z; };

struct EmuThread {
    uint3 thread_idx, block_idx;
    dim3 block_dim, grid_dim;
};
extern thread_local EmuThread emu_thread;
extern "C" void emu_syncthreads();
extern "C" void emu_syncwarp();
extern "C" uint64_t* emu_warp_slots();
extern "C" unsigned emu_lane();

#define threadIdx (emu_thread.thread_idx)
#define blockIdx (emu_thread.block_idx)
#define blockDim (emu_thread.block_dim)
#define gridDim (emu_thread.grid_dim)
#define warpSize 32
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
// Fibers of one block run on one OS thread, so a per-thread static is exactly block-shared.
#define __shared__ static thread_local
#define __syncthreads() emu_syncthreads()
#define __syncwarp(...) emu_syncwarp()

template <class T> static inline T emu_bits(uint64_t v) { T t; memcpy(&t, &v, sizeof(T)); return t; }
template <class T> static inline uint64_t emu_slot(T t) { uint64_t v = 0; memcpy(&v, &t, sizeof(T)); return v; }

// A shuffle: every lane publishes its value, the warp meets, each reads its source lane, and the
// warp meets again before the slots can be reused.
template <class T> static inline T emu_shuffle(T v, int src, bool in_range) {
    uint64_t* slots = emu_warp_slots();
    slots[emu_lane()] = emu_slot(v);
    emu_syncwarp();
    T r = in_range ? emu_bits<T>(slots[src]) : v;
    emu_syncwarp();
    return r;
}
template <class T> static inline T __shfl_sync(unsigned, T v, int src, int width = 32) {
    int lane = emu_lane();
    return emu_shuffle(v, (lane / width) * width + (src % width), true);
}
template <class T> static inline T __shfl_down_sync(unsigned, T v, unsigned d, int width = 32) {
    int lane = emu_lane();
    int src = lane + d;
    return emu_shuffle(v, src, src / width == lane / width);
}
template <class T> static inline T __shfl_up_sync(unsigned, T v, unsigned d, int width = 32) {
    int lane = emu_lane();
    int src = lane - (int)d;
    return emu_shuffle(v, src < 0 ? 0 : src, src >= 0 && src / width == lane / width);
}
template <class T> static inline T __shfl_xor_sync(unsigned, T v, int m, int width = 32) {
    int lane = emu_lane();
    int src = lane ^ m;
    return emu_shuffle(v, src, src / width == lane / width);
}

// IEEE binary16 <-> binary32 (round to nearest even), as the GPU's cvt instructions do.
static inline float emu_h2f(unsigned short h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
    if (exp == 0x1fu) u = sign | 0x7f800000u | (man << 13);
    else if (exp != 0) u = sign | ((exp + 112u) << 23) | (man << 13);
    else if (man == 0) u = sign;
    else {
        int e = -1;
        do { e++; man <<= 1; } while (!(man & 0x400u));
        u = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline unsigned short emu_f2h(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a >= 0x7f800000u) return (unsigned short)(sign | 0x7c00u | (a > 0x7f800000u ? 0x200u : 0u));
    if (a >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u);  // rounds past the largest half
    if (a < 0x38800000u) {                                           // subnormal half or zero
        if (a < 0x33000000u) return (unsigned short)sign;
        uint32_t man = (a & 0x7fffffu) | 0x800000u, shift = 126u - (a >> 23);
        uint32_t h = man >> shift, rest = man & ((1u << shift) - 1u), half = 1u << (shift - 1u);
        if (rest > half || (rest == half && (h & 1u))) h++;
        return (unsigned short)(sign | h);
    }
    uint32_t h = ((a >> 13) - (112u << 10)), rest = a & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++;
    return (unsigned short)(sign | h);
}

static inline float __uint_as_float(unsigned v) { float f; memcpy(&f, &v, 4); return f; }
static inline unsigned __float_as_uint(float f) { unsigned v; memcpy(&v, &f, 4); return v; }
static inline float __int_as_float(int v) { float f; memcpy(&f, &v, 4); return f; }
static inline int __float_as_int(float f) { int v; memcpy(&v, &f, 4); return v; }
#define __expf expf
#define __logf logf
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __saturatef(float x) { return fminf(fmaxf(x, 0.0f), 1.0f); }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline float __frcp_rn(float x) { return 1.0f / x; }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
template <class T> static inline T __ldg(const T* p) { return *p; }
template <class A, class B> static inline std::common_type_t<A, B> min(A a, B b) { using C = std::common_type_t<A, B>; return (C)a < (C)b ? (C)a : (C)b; }
template <class A, class B> static inline std::common_type_t<A, B> max(A a, B b) { using C = std::common_type_t<A, B>; return (C)a > (C)b ? (C)a : (C)b; }

template <class T> static inline T atomicAdd(T* p, T v) { return std::atomic_ref<T>(*p).fetch_add(v); }
static inline float atomicMax(float* p, float v) {
    std::atomic_ref<float> a(*p);
    float old = a.load();
    while (old < v && !a.compare_exchange_weak(old, v)) {}
    return old;
}

// Binding a launch: the kernel's arguments are copied out of the driver's `void**` array by
// their declared types, so a captured launch owns its arguments.
struct EmuBound {
    void (*run)(void*);
    void (*drop)(void*);
    void* data;
};
template <class... A> struct EmuCall {
    void (*f)(A...);
    std::tuple<std::decay_t<A>...> args;
};
template <class... A, size_t... I>
static EmuBound emu_bind_impl(void (*f)(A...), void** a, std::index_sequence<I...>) {
    auto* c = new EmuCall<A...>{f, std::tuple<std::decay_t<A>...>(*static_cast<std::decay_t<A>*>(a[I])...)};
    return EmuBound{
        [](void* d) { auto* c = static_cast<EmuCall<A...>*>(d); std::apply(c->f, c->args); },
        [](void* d) { delete static_cast<EmuCall<A...>*>(d); },
        c,
    };
}
template <class... A> static EmuBound emu_bind(void (*f)(A...), void** a) {
    return emu_bind_impl(f, a, std::index_sequence_for<A...>{});
}
