# Cross-compiling the core and its C++ tests for 64-bit Windows with mingw-w64, from Linux
# (Debian: g++-mingw-w64-x86-64-posix, the posix thread model, which std::thread needs in
# GCC 12; wine64 to run the result). A stand-in for the Windows build, not the build
# itself: the wheels are MSVC's. .ci/other-builds windows runs
#   cmake -S . -B build/ci-windows --toolchain cmake/mingw-w64.cmake \
#     -DTAPEGRAD_PYTHON=OFF -DTAPEGRAD_CPP_TESTS=ON -DTAPEGRAD_THREADED_DISPATCH=OFF
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR AMD64)
set(TG_MINGW x86_64-w64-mingw32)
find_program(CMAKE_CXX_COMPILER NAMES ${TG_MINGW}-g++-posix ${TG_MINGW}-g++ REQUIRED)
set(CMAKE_FIND_ROOT_PATH /usr/${TG_MINGW})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
# A self-contained .exe: no libstdc++/libgcc/winpthread DLLs to put on wine's path.
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")
# wine runs what the build and ctest run of it (doctest_discover_tests lists the cases).
find_program(TG_WINE NAMES wine64 wine PATHS /usr/lib/wine)
if(TG_WINE)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${TG_WINE})
endif()
# The build machine's doctest, without its /usr/include (see doctest-cross/).
set(doctest_DIR "${CMAKE_CURRENT_LIST_DIR}/doctest-cross" CACHE PATH "")
