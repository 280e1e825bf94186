#pragma once
#include <pybind11/pybind11.h>

#include <memory>

#include "tapegrad/program.hpp"

namespace tapegrad::bind {

// The Python handle of a frozen program; shared, immutable, safe across threads.
struct Program {
    std::shared_ptr<const program> p;
};

void register_function(pybind11::module_& m);

}  // namespace tapegrad::bind
