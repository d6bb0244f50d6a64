// What the parts of the CUDA emulator share: runtime.cpp (the driver), nvrtc.cpp, cublas.cpp.
#pragma once
#include <functional>
#include <string>

namespace emu {

// Marks emulator "PTX" (the unit's source, which cuModuleLoadData compiles).
inline constexpr const char* MARK = "//HETSCHED-EMULATOR\n";

using Op = std::function<void()>;

// Runs `op` now, or records it into the graph stream `s` is capturing.
void enqueue(void* s, Op op);
bool capturing(void* s);
// HETSCHED_EMULATOR_TRACE: print launches and GEMMs as they are queued.
bool tracing();
// Compiles `src` (CUDA C) into a shared object; returns its path, or "" with `log` set.
std::string compile_unit(const std::string& src, std::string& log);

}  // namespace emu
