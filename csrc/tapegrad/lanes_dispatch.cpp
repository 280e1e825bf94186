#include <cstdlib>
#include <cstring>

#include "tapegrad/lanes.hpp"
#include "tapegrad/platform.hpp"

namespace tapegrad::lanes {

const kernels& get() {
    static const kernels& chosen = []() -> const kernels& {
        const char* want = std::getenv("TAPEGRAD_LANES");
        if (want && std::strcmp(want, "baseline") == 0) return baseline::set;
#ifdef TG_HAVE_AVX2
        if (platform::cpu_has_avx2()) return avx2::set;
#endif
        return baseline::set;
    }();
    return chosen;
}

}  // namespace tapegrad::lanes
