# doctest for the mingw-w64 cross build (cmake/mingw-w64.cmake points doctest_DIR here):
# the build machine's header-only doctest (Debian's doctest-dev), on an include path of its
# own. Its installed package would add /usr/include, putting the build machine's C headers
# ahead of the target's.
find_path(TG_DOCTEST_INCLUDE doctest/doctest.h PATHS /usr/include NO_CMAKE_FIND_ROOT_PATH REQUIRED)
find_file(TG_DOCTEST_MODULE doctest.cmake PATHS /usr/lib/cmake/doctest /usr/lib64/cmake/doctest
          NO_CMAKE_FIND_ROOT_PATH REQUIRED)
set(tg_include "${CMAKE_BINARY_DIR}/doctest-include")
file(MAKE_DIRECTORY "${tg_include}")
file(CREATE_LINK "${TG_DOCTEST_INCLUDE}/doctest" "${tg_include}/doctest" SYMBOLIC)
add_library(doctest::doctest INTERFACE IMPORTED)
target_include_directories(doctest::doctest INTERFACE "${tg_include}")
get_filename_component(tg_module_dir "${TG_DOCTEST_MODULE}" DIRECTORY)
list(APPEND CMAKE_MODULE_PATH "${tg_module_dir}")  # include(doctest): doctest_discover_tests
set(doctest_FOUND TRUE)
