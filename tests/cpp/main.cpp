// The core's C++ unit tests (doctest), built by CMake with TAPEGRAD_CPP_TESTS=ON and
// run by ctest: `make cpptest`, or `make cpptest-asan` under ASan + UBSan.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
