// Loading a shared library that F.compile() built (codegen.cpp's one-point code,
// codegen_batch.cpp's batch code): dlopen (RTLD_LOCAL: its symbols stay its own) or
// LoadLibrary.
#pragma once
#include <string>

namespace tapegrad::shared_library {

void* open(const std::string& path);  // null on failure: error() says why
void* symbol(void* handle, const char* name);
void close(void* handle);
std::string error();

}  // namespace tapegrad::shared_library
