// The emulator's NVRTC: "compiling" checks the unit with g++ (prelude.h maps CUDA C onto C++);
// the "PTX" is the marked source, which the driver's cuModuleLoadData builds and loads.
#include <string.h>

#include "emulator.h"

extern "C" {

struct Program {
    std::string src, log, ptx;
};
int nvrtcVersion(int* major, int* minor) { *major = 13; *minor = 0; return 0; }
const char* nvrtcGetErrorString(int r) { return r == 0 ? "NVRTC_SUCCESS" : "NVRTC_ERROR_COMPILATION"; }
int nvrtcCreateProgram(void** prog, const char* src, const char*, int, const char* const*, const char* const*) {
    *prog = new Program{src, "", ""};
    return 0;
}
int nvrtcDestroyProgram(void** prog) { delete static_cast<Program*>(*prog); *prog = nullptr; return 0; }
int nvrtcCompileProgram(void* prog, int, const char* const*) {
    Program* p = static_cast<Program*>(prog);
    if (emu::compile_unit(p->src, p->log).empty()) return 6;
    p->ptx = std::string(emu::MARK) + p->src;
    return 0;
}
int nvrtcGetPTXSize(void* prog, size_t* n) { *n = static_cast<Program*>(prog)->ptx.size() + 1; return 0; }
int nvrtcGetPTX(void* prog, char* out) { auto& s = static_cast<Program*>(prog)->ptx; memcpy(out, s.c_str(), s.size() + 1); return 0; }
int nvrtcGetProgramLogSize(void* prog, size_t* n) { *n = static_cast<Program*>(prog)->log.size() + 1; return 0; }
int nvrtcGetProgramLog(void* prog, char* out) { auto& s = static_cast<Program*>(prog)->log; memcpy(out, s.c_str(), s.size() + 1); return 0; }

}  // extern "C"
