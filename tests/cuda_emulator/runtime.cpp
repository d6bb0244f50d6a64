// A CPU stand-in for the CUDA driver, NVRTC and cuBLAS, so the CUDA backend's real code path
// (cudarc calls, NVRTC compilation, launches, stream capture and graph replay, cuBLAS GEMMs) runs
// and is checked against references on a machine without a GPU.
//
// - NVRTC "compiles" a unit with g++ (prelude.h maps CUDA C onto C++); its "PTX" is the source,
//   marked, which cuModuleLoadData compiles (cached by source hash) and dlopens.
// - A launch runs every block; a block's threads run as fibers on one OS thread, switching at
//   __syncthreads and warp barriers (shuffles), so shared memory and barriers mean what they do
//   on a GPU. Blocks are spread over the machine's cores.
// - Everything is synchronous; a capturing stream records its work into the graph instead.
// - Device allocations are filled with NaN bytes (a kernel reading memory nobody wrote shows up
//   in the results) and followed by a canary checked at every synchronisation (a kernel writing
//   past its buffer is reported as CUDA_ERROR_ILLEGAL_ADDRESS).
//
// HETSCHED_EMULATOR_TRACE=1 prints every kernel launch and GEMM as it is queued.
//
// This file is the driver; nvrtc.cpp and cublas.cpp are the other two libraries, emulator.h what
// they share. All three build into libcudaemu.so, loaded as libcuda.so / libnvrtc.so /
// libcublas.so (thin libraries that depend on it) through LD_LIBRARY_PATH. Built and driven by
// tests/cuda.rs.
#include "prelude.h"
#include "emulator.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <ucontext.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <vector>

thread_local EmuThread emu_thread;

using emu::capturing;
using emu::compile_unit;
using emu::enqueue;
using emu::MARK;
using emu::tracing;

namespace {
constexpr size_t CANARY = 64;
constexpr unsigned char CANARY_BYTE = 0xA5;
constexpr size_t FIBER_STACK = 128 * 1024;

enum { RUN = 0, BLOCK_WAIT = 1, WARP_WAIT = 2, DONE = 3 };

[[noreturn]] void die(const char* what) {
    fprintf(stderr, "cuda emulator: %s\n", what);
    abort();
}

// ---------------------------------------------------------------- kernels and fibers

struct BlockRun {
    unsigned nthreads = 0;
    std::vector<ucontext_t> ctx;
    std::vector<int> state;
    std::vector<uint64_t> slots;
    ucontext_t sched;
    unsigned current = 0;
    const EmuBound* bound = nullptr;
    std::vector<char*> stacks;
    ~BlockRun() {
        for (char* s : stacks) free(s);
    }
};
thread_local BlockRun* block_run = nullptr;

uint3 thread_coords(unsigned t, dim3 b) { return uint3{t % b.x, (t / b.x) % b.y, t / (b.x * b.y)}; }

void fiber_entry() {
    BlockRun* b = block_run;
    b->bound->run(b->bound->data);
    b->state[b->current] = DONE;
}

void yield_with(int state) {
    BlockRun* b = block_run;
    if (!b) die("__syncthreads or a warp primitive in a kernel run without fibers");
    b->state[b->current] = state;
    swapcontext(&b->ctx[b->current], &b->sched);
}

void run_block_fibers(BlockRun& b, const EmuBound& bound, dim3 block) {
    unsigned n = block.x * block.y * block.z;
    b.nthreads = n;
    b.bound = &bound;
    b.ctx.resize(n);
    b.state.assign(n, RUN);
    b.slots.assign((n + 31) / 32 * 32, 0);
    while (b.stacks.size() < n) {
        char* s = static_cast<char*>(malloc(FIBER_STACK));
        if (!s) die("out of memory for fiber stacks");
        b.stacks.push_back(s);
    }
    for (unsigned t = 0; t < n; t++) {
        getcontext(&b.ctx[t]);
        b.ctx[t].uc_stack.ss_sp = b.stacks[t];
        b.ctx[t].uc_stack.ss_size = FIBER_STACK;
        b.ctx[t].uc_link = &b.sched;
        makecontext(&b.ctx[t], fiber_entry, 0);
    }
    block_run = &b;
    for (;;) {
        for (unsigned t = 0; t < n; t++) {
            if (b.state[t] != RUN) continue;
            b.current = t;
            emu_thread.thread_idx = thread_coords(t, block);
            swapcontext(&b.sched, &b.ctx[t]);
        }
        unsigned alive = 0, at_block = 0;
        for (unsigned t = 0; t < n; t++) {
            alive += b.state[t] != DONE;
            at_block += b.state[t] == BLOCK_WAIT;
        }
        if (alive == 0) break;
        bool released = false;
        if (at_block == alive) {
            for (unsigned t = 0; t < n; t++)
                if (b.state[t] == BLOCK_WAIT) b.state[t] = RUN;
            released = true;
        } else {
            for (unsigned w = 0; w < n; w += 32) {
                unsigned end = std::min(n, w + 32), waiting = 0, live = 0;
                for (unsigned t = w; t < end; t++) {
                    live += b.state[t] != DONE;
                    waiting += b.state[t] == WARP_WAIT;
                }
                if (live > 0 && waiting == live) {
                    for (unsigned t = w; t < end; t++)
                        if (b.state[t] == WARP_WAIT) b.state[t] = RUN;
                    released = true;
                }
            }
        }
        if (!released) die("deadlock: threads wait at different barriers (divergent __syncthreads?)");
    }
    block_run = nullptr;
}

struct Function {
    EmuBound (*bind)(void**);
    bool fibers;
    std::string name;
};

void run_grid(const EmuBound& bound, dim3 grid, dim3 block, bool fibers) {
    size_t blocks = size_t(grid.x) * grid.y * grid.z;
    unsigned per_block = block.x * block.y * block.z;
    std::atomic<size_t> next{0};
    auto worker = [&] {
        BlockRun b;
        emu_thread.block_dim = block;
        emu_thread.grid_dim = grid;
        for (size_t i; (i = next.fetch_add(1)) < blocks;) {
            emu_thread.block_idx = uint3{unsigned(i % grid.x), unsigned((i / grid.x) % grid.y), unsigned(i / (size_t(grid.x) * grid.y))};
            if (fibers) {
                run_block_fibers(b, bound, block);
            } else {
                for (unsigned t = 0; t < per_block; t++) {
                    emu_thread.thread_idx = thread_coords(t, block);
                    bound.run(bound.data);
                }
            }
        }
    };
    unsigned workers = std::min<size_t>(std::max(1u, std::thread::hardware_concurrency()), blocks);
    if (workers <= 1 || blocks * per_block < 4096) {
        worker();
        return;
    }
    std::vector<std::thread> pool;
    for (unsigned w = 1; w < workers; w++) pool.emplace_back(worker);
    worker();
    for (auto& t : pool) t.join();
}

// ---------------------------------------------------------------- compiling units

std::string self_dir() {
    Dl_info info;
    dladdr(reinterpret_cast<void*>(&run_grid), &info);
    std::string p = info.dli_fname;
    return p.substr(0, p.rfind('/'));
}

uint64_t fnv1a(const std::string& s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
    return h;
}

std::mutex compile_lock;

}  // namespace

std::string emu::compile_unit(const std::string& src, std::string& log) {
    std::lock_guard<std::mutex> g(compile_lock);
    std::string dir = self_dir();
    const char* cache = getenv("HETSCHED_EMULATOR_CACHE");
    std::string out_dir = cache ? cache : dir + "/modules";
    mkdir(out_dir.c_str(), 0755);
    // The prelude is part of the key: a changed prelude must not reuse stale objects.
    static const std::string prelude = [&] {
        std::string text;
        FILE* p = fopen((dir + "/prelude.h").c_str(), "r");
        char buf[4096];
        size_t n;
        while (p && (n = fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, n);
        if (p) fclose(p);
        return text;
    }();
    char hash[17];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)fnv1a(prelude + src));
    std::string base = out_dir + "/" + hash, so = base + ".so";
    struct stat st;
    if (stat(so.c_str(), &st) == 0) return so;
    std::string full = src + "\n// entry points for the emulator\n";
    std::regex entry(R"(__global__\s+void\s+(\w+)\s*\()");
    for (auto it = std::sregex_iterator(src.begin(), src.end(), entry); it != std::sregex_iterator(); ++it) {
        std::string name = (*it)[1];
        full += "extern \"C\" EmuBound __emu_bind_" + name + "(void** a) { return emu_bind(" + name + ", a); }\n";
    }
    // Other processes may compile the same unit at once: every file but the final .so (renamed
    // into place atomically) is private to this process.
    std::string mine = base + "." + std::to_string(getpid());
    FILE* f = fopen((mine + ".cu").c_str(), "w");
    if (!f) {
        log = "cannot write " + mine + ".cu";
        return "";
    }
    fputs(full.c_str(), f);
    fclose(f);
    std::string tmp = mine + ".so.tmp";
    std::string cmd = "g++ -std=c++20 -O2 -fPIC -shared -w -ffp-contract=off -include " + dir + "/prelude.h -x c++ " + mine + ".cu -o " + tmp +
                      " -L" + dir + " -lcudaemu -Wl,-rpath," + dir + " > " + mine + ".log 2>&1";
    int rc = system(cmd.c_str());
    if (rc != 0) {
        FILE* l = fopen((mine + ".log").c_str(), "r");
        log = "g++ failed:\n";
        char buf[4096];
        size_t n;
        while (l && (n = fread(buf, 1, sizeof buf, l)) > 0) log.append(buf, n);
        if (l) fclose(l);
        return "";
    }
    rename(tmp.c_str(), so.c_str());
    return so;
}

namespace {

// ---------------------------------------------------------------- memory

std::mutex mem_lock;
std::map<uintptr_t, size_t> allocations;  // device pointer -> size asked for

bool canaries_intact(std::string* which) {
    std::lock_guard<std::mutex> g(mem_lock);
    for (auto& [p, size] : allocations) {
        const unsigned char* c = reinterpret_cast<const unsigned char*>(p) + size;
        for (size_t i = 0; i < CANARY; i++)
            if (c[i] != CANARY_BYTE) {
                if (which) *which = "a kernel wrote past the end of a " + std::to_string(size) + "-byte buffer";
                return false;
            }
    }
    return true;
}

uintptr_t device_alloc(size_t size) {
    unsigned char* p = static_cast<unsigned char*>(aligned_alloc(256, (size + CANARY + 255) / 256 * 256));
    if (!p) return 0;
    memset(p, 0xFF, size);
    memset(p + size, CANARY_BYTE, CANARY);
    std::lock_guard<std::mutex> g(mem_lock);
    allocations[reinterpret_cast<uintptr_t>(p)] = size;
    return reinterpret_cast<uintptr_t>(p);
}

bool device_free(uintptr_t p) {
    std::lock_guard<std::mutex> g(mem_lock);
    auto it = allocations.find(p);
    if (it == allocations.end()) return false;
    allocations.erase(it);
    free(reinterpret_cast<void*>(p));
    return true;
}

// ---------------------------------------------------------------- streams and graphs

using emu::Op;
struct Graph {
    std::vector<Op> ops;
};
struct Stream {
    // As on a device, work queued by any thread while the stream captures joins the graph
    // instead of running; the lock keeps that well-defined when threads share a stream.
    std::mutex lock;
    Graph* capture = nullptr;
};
struct Event {
    // As on a device: only timing events that have completed a record can be timed.
    bool timing = true, recorded = false;
    std::chrono::steady_clock::time_point at;
};
Stream default_stream;

Stream* stream_of(void* s) { return s ? static_cast<Stream*>(s) : &default_stream; }

}  // namespace

bool emu::tracing() {
    static const bool on = getenv("HETSCHED_EMULATOR_TRACE") != nullptr;
    return on;
}

void emu::enqueue(void* s, Op op) {
    Stream* st = stream_of(s);
    {
        std::lock_guard<std::mutex> g(st->lock);
        if (st->capture) {
            st->capture->ops.push_back(std::move(op));
            return;
        }
    }
    op();
}

bool emu::capturing(void* s) {
    Stream* st = stream_of(s);
    std::lock_guard<std::mutex> g(st->lock);
    return st->capture != nullptr;
}


// Used by the prelude (and so by every compiled unit).
extern "C" void emu_syncthreads() { yield_with(BLOCK_WAIT); }
extern "C" void emu_syncwarp() { yield_with(WARP_WAIT); }
extern "C" uint64_t* emu_warp_slots() {
    if (!block_run) die("a warp primitive in a kernel run without fibers");
    return &block_run->slots[block_run->current / 32 * 32];
}
extern "C" unsigned emu_lane() { return block_run ? block_run->current % 32 : 0; }

// ---------------------------------------------------------------- driver API

typedef int CUresult;
typedef unsigned long long CUdeviceptr;
enum : CUresult {
    OK = 0,
    INVALID_VALUE = 1,
    INVALID_IMAGE = 200,
    INVALID_HANDLE = 400,
    NOT_FOUND = 500,
    ILLEGAL_ADDRESS = 700,
    NOT_SUPPORTED = 801,
    CAPTURE_UNSUPPORTED = 900,
};

extern "C" {

CUresult cuInit(unsigned) { return OK; }
CUresult cuDriverGetVersion(int* v) { *v = 13000; return OK; }
CUresult cuDeviceGetCount(int* n) { *n = 1; return OK; }
CUresult cuDeviceGet(int* d, int ordinal) { if (ordinal != 0) return INVALID_VALUE; *d = 0; return OK; }
CUresult cuDeviceGetName(char* name, int len, int) { snprintf(name, len, "hetsched CUDA emulator (CPU)"); return OK; }
CUresult cuDeviceTotalMem_v2(size_t* bytes, int) { *bytes = size_t(16) << 30; return OK; }
CUresult cuMemGetInfo_v2(size_t* free_bytes, size_t* total) { *free_bytes = *total = size_t(16) << 30; return OK; }
CUresult cuDeviceGetAttribute(int* v, int attr, int) {
    switch (attr) {
        case 1: *v = 1024; break;     // max threads per block
        case 8: *v = 49152; break;    // shared memory per block
        case 10: *v = 32; break;      // warp size
        case 16: *v = 4; break;       // multiprocessors
        case 75: *v = 9; break;       // compute capability major
        case 76: *v = 0; break;       // minor
        case 115: *v = 1; break;      // memory pools (async allocation)
        default: *v = 0;
    }
    return OK;
}
static int primary_ctx;
CUresult cuDevicePrimaryCtxRetain(void** ctx, int) { *ctx = &primary_ctx; return OK; }
CUresult cuDevicePrimaryCtxRelease_v2(int) { return OK; }
static thread_local void* current_ctx;
CUresult cuCtxSetCurrent(void* ctx) { current_ctx = ctx; return OK; }
CUresult cuCtxGetCurrent(void** ctx) { *ctx = current_ctx; return OK; }
CUresult cuCtxPushCurrent_v2(void* ctx) { current_ctx = ctx; return OK; }
CUresult cuCtxPopCurrent_v2(void** ctx) { if (ctx) *ctx = current_ctx; return OK; }
CUresult cuCtxGetDevice(int* d) { *d = 0; return OK; }
CUresult cuCtxGetStreamPriorityRange(int* least, int* greatest) { *least = 0; *greatest = 0; return OK; }

static CUresult check_memory() {
    std::string what;
    if (canaries_intact(&what)) return OK;
    fprintf(stderr, "cuda emulator: %s\n", what.c_str());
    return ILLEGAL_ADDRESS;
}
CUresult cuCtxSynchronize() { return check_memory(); }

CUresult cuStreamCreate(void** s, unsigned) { *s = new Stream(); return OK; }
CUresult cuStreamCreateWithPriority(void** s, unsigned, int) { *s = new Stream(); return OK; }
CUresult cuStreamDestroy_v2(void* s) { delete static_cast<Stream*>(s); return OK; }
CUresult cuStreamSynchronize(void* s) {
    if (capturing(s)) return CAPTURE_UNSUPPORTED;
    return check_memory();
}
CUresult cuStreamQuery(void* s) { return cuStreamSynchronize(s); }
CUresult cuStreamWaitEvent(void*, void*, unsigned) { return OK; }
CUresult cuStreamBeginCapture_v2(void* s, int) {
    Stream* st = stream_of(s);
    std::lock_guard<std::mutex> g(st->lock);
    if (!s || st->capture) return CAPTURE_UNSUPPORTED;  // the legacy stream cannot be captured
    st->capture = new Graph();
    return OK;
}
CUresult cuStreamEndCapture(void* s, void** graph) {
    Stream* st = stream_of(s);
    std::lock_guard<std::mutex> g(st->lock);
    if (!st->capture) return INVALID_VALUE;
    *graph = st->capture;
    st->capture = nullptr;
    return OK;
}
CUresult cuStreamIsCapturing(void* s, int* status) { *status = capturing(s) ? 1 : 0; return OK; }
CUresult cuGraphInstantiateWithFlags(void** exec, void* graph, unsigned long long) {
    *exec = new Graph(*static_cast<Graph*>(graph));
    return OK;
}
CUresult cuGraphUpload(void*, void*) { return OK; }
CUresult cuGraphLaunch(void* exec, void* s) {
    Graph* g = static_cast<Graph*>(exec);
    if (capturing(s)) return CAPTURE_UNSUPPORTED;
    for (auto& op : g->ops) op();
    return OK;
}
CUresult cuGraphDestroy(void* g) { delete static_cast<Graph*>(g); return OK; }
CUresult cuGraphExecDestroy(void* g) { delete static_cast<Graph*>(g); return OK; }

CUresult cuEventCreate(void** e, unsigned flags) {
    Event* ev = new Event();
    ev->timing = !(flags & 2);  // CU_EVENT_DISABLE_TIMING
    *e = ev;
    return OK;
}
CUresult cuEventDestroy_v2(void* e) { delete static_cast<Event*>(e); return OK; }
CUresult cuEventRecord(void* e, void* s) {
    enqueue(s, [e] {
        static_cast<Event*>(e)->at = std::chrono::steady_clock::now();
        static_cast<Event*>(e)->recorded = true;
    });
    return OK;
}
CUresult cuEventRecordWithFlags(void* e, void* s, unsigned) { return cuEventRecord(e, s); }
CUresult cuEventSynchronize(void*) { return OK; }
CUresult cuEventQuery(void*) { return OK; }
CUresult cuEventElapsedTime(float* ms, void* a, void* b) {
    for (Event* e : {static_cast<Event*>(a), static_cast<Event*>(b)})
        if (!e->timing || !e->recorded) return INVALID_HANDLE;
    *ms = std::chrono::duration<float, std::milli>(static_cast<Event*>(b)->at - static_cast<Event*>(a)->at).count();
    return OK;
}
CUresult cuEventElapsedTime_v2(float* ms, void* a, void* b) { return cuEventElapsedTime(ms, a, b); }

CUresult cuMemAlloc_v2(CUdeviceptr* p, size_t n) { *p = device_alloc(n); return *p ? OK : 2; }
CUresult cuMemAllocAsync(CUdeviceptr* p, size_t n, void*) { return cuMemAlloc_v2(p, n); }
CUresult cuMemFree_v2(CUdeviceptr p) { return device_free(p) ? OK : INVALID_VALUE; }
CUresult cuMemFreeAsync(CUdeviceptr p, void*) { return cuMemFree_v2(p); }
CUresult cuMemHostAlloc(void** p, size_t n, unsigned) { *p = malloc(n ? n : 1); return *p ? OK : 2; }
CUresult cuMemAllocHost_v2(void** p, size_t n) { return cuMemHostAlloc(p, n, 0); }
CUresult cuMemFreeHost(void* p) { free(p); return OK; }
CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void* src, size_t n, void* s) {
    enqueue(s, [=] { memcpy(reinterpret_cast<void*>(dst), src, n); });
    return OK;
}
CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void* src, size_t n) { memcpy(reinterpret_cast<void*>(dst), src, n); return OK; }
CUresult cuMemcpyDtoHAsync_v2(void* dst, CUdeviceptr src, size_t n, void* s) {
    enqueue(s, [=] { memcpy(dst, reinterpret_cast<const void*>(src), n); });
    return OK;
}
CUresult cuMemcpyDtoH_v2(void* dst, CUdeviceptr src, size_t n) { memcpy(dst, reinterpret_cast<const void*>(src), n); return OK; }
CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t n, void* s) {
    enqueue(s, [=] { memmove(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), n); });
    return OK;
}
CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t n) { memmove(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), n); return OK; }
CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, void* s) {
    enqueue(s, [=] { memset(reinterpret_cast<void*>(dst), v, n); });
    return OK;
}
CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char v, size_t n) { memset(reinterpret_cast<void*>(dst), v, n); return OK; }
CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned v, size_t n, void* s) {
    enqueue(s, [=] { for (size_t i = 0; i < n; i++) reinterpret_cast<unsigned*>(dst)[i] = v; });
    return OK;
}
CUresult cuLaunchHostFunc(void* s, void (*fn)(void*), void* data) {
    enqueue(s, [=] { fn(data); });
    return OK;
}

struct Module {
    void* handle;
    bool fibers;
};
CUresult cuModuleLoadData(void** module, const void* image) {
    std::string text = static_cast<const char*>(image);
    if (text.rfind(MARK, 0) != 0) return INVALID_IMAGE;
    std::string src = text.substr(strlen(MARK)), log;
    std::string so = compile_unit(src, log);
    if (so.empty()) {
        fprintf(stderr, "cuda emulator: %s\n", log.c_str());
        return INVALID_IMAGE;
    }
    void* h = dlopen(so.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "cuda emulator: %s\n", dlerror());
        return INVALID_IMAGE;
    }
    bool fibers = src.find("__syncthreads") != std::string::npos || src.find("__shfl") != std::string::npos || src.find("__syncwarp") != std::string::npos;
    *module = new Module{h, fibers};
    return OK;
}
CUresult cuModuleUnload(void* m) { delete static_cast<Module*>(m); return OK; }
CUresult cuModuleGetFunction(void** f, void* m, const char* name) {
    Module* mod = static_cast<Module*>(m);
    auto bind = reinterpret_cast<EmuBound (*)(void**)>(dlsym(mod->handle, (std::string("__emu_bind_") + name).c_str()));
    if (!bind) return NOT_FOUND;
    *f = new Function{bind, mod->fibers, name};
    return OK;
}
CUresult cuFuncGetAttribute(int* v, int, void*) { *v = 0; return OK; }
CUresult cuFuncSetAttribute(void*, int, int) { return OK; }
CUresult cuFuncSetCacheConfig(void*, int) { return OK; }

CUresult cuLaunchKernel(void* f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz, unsigned shared, void* s, void** params, void** extra) {
    Function* fn = static_cast<Function*>(f);
    if (extra || shared > 49152 || bx * by * bz == 0 || bx * by * bz > 1024 || gx * gy * gz == 0 || gy > 65535 || gz > 65535) {
        fprintf(stderr, "cuda emulator: invalid launch of %s: grid (%u,%u,%u) block (%u,%u,%u) shared %u\n", fn->name.c_str(), gx, gy, gz, bx, by, bz, shared);
        return INVALID_VALUE;
    }
    auto bound = std::shared_ptr<EmuBound>(new EmuBound(fn->bind(params)), [](EmuBound* b) { b->drop(b->data); delete b; });
    bool fibers = fn->fibers;
    if (tracing()) fprintf(stderr, "emulator: launch %s grid (%u,%u,%u) block (%u,%u,%u)%s\n", fn->name.c_str(), gx, gy, gz, bx, by, bz, capturing(s) ? " [captured]" : "");
    dim3 grid{gx, gy, gz}, block{bx, by, bz};
    enqueue(s, [=] { run_grid(*bound, grid, block, fibers); });
    return OK;
}

static const char* error_name(CUresult r) {
    switch (r) {
        case OK: return "CUDA_SUCCESS";
        case INVALID_VALUE: return "CUDA_ERROR_INVALID_VALUE";
        case INVALID_IMAGE: return "CUDA_ERROR_INVALID_IMAGE";
        case NOT_FOUND: return "CUDA_ERROR_NOT_FOUND";
        case ILLEGAL_ADDRESS: return "CUDA_ERROR_ILLEGAL_ADDRESS";
        case CAPTURE_UNSUPPORTED: return "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED";
        default: return "CUDA_ERROR_UNKNOWN";
    }
}
CUresult cuGetErrorName(CUresult r, const char** s) { *s = error_name(r); return OK; }
CUresult cuGetErrorString(CUresult r, const char** s) { *s = error_name(r); return OK; }

}  // extern "C"
