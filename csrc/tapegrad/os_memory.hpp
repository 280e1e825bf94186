// The operating system's memory calls, included one way everywhere: mmap and its kin on
// Linux and macOS; on Windows, windows.h without its min/max macros and rarely used parts.
#pragma once

#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#include <unistd.h>
#endif
#ifdef _WIN32
#ifndef NOMINMAX
#define NOMINMAX
#endif
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>
#endif
