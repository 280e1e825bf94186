#include "tapegrad/shared_library.hpp"

#ifdef _WIN32
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#else
#include <dlfcn.h>
#endif

namespace tapegrad::shared_library {

#ifdef _WIN32
void* open(const std::string& path) { return (void*)LoadLibraryA(path.c_str()); }
void* symbol(void* h, const char* name) {
    return reinterpret_cast<void*>(GetProcAddress(static_cast<HMODULE>(h), name));
}
void close(void* h) { FreeLibrary(static_cast<HMODULE>(h)); }
std::string error() { return "error " + std::to_string(GetLastError()); }
#else
void* open(const std::string& path) { return dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL); }
void* symbol(void* h, const char* name) { return dlsym(h, name); }
void close(void* h) { dlclose(h); }
std::string error() {
    const char* e = dlerror();
    return e ? e : "unknown error";
}
#endif

}  // namespace tapegrad::shared_library
