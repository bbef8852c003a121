// Kernel variant selection: CPU detection, the IMPRESSLEARN_NATIVE_VARIANT override, and the
// measured rule for when combine switches to byte tables.
#include "variant.h"

#include <c10/util/Exception.h>

#include <atomic>
#include <cstdlib>

namespace impresslearn_native {
namespace {

const char* const kNames[] = {"generic", "lut", "avx2", "avx512"};

bool cpu_runs(Variant v) {
  switch (v) {
    case Variant::generic:
    case Variant::lut:
      return true;
#ifdef IL_X86
    case Variant::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Variant::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#endif
    default:
      return false;
  }
}

Variant best() {
  if (cpu_runs(Variant::avx512)) return Variant::avx512;
  if (cpu_runs(Variant::avx2)) return Variant::avx2;
  return Variant::generic;
}

Variant parse(const std::string& name) {
  if (name == "auto") return best();
  for (int i = 0; i < 4; ++i) {
    if (name == kNames[i]) {
      const auto v = static_cast<Variant>(i);
      TORCH_CHECK(cpu_runs(v), "impresslearn native: this CPU cannot run the '", name, "' kernels");
      return v;
    }
  }
  TORCH_CHECK(false, "impresslearn native: unknown kernel variant '", name,
              "'; choose auto, generic, lut, avx2 or avx512");
}

Variant initial() {
  const char* env = std::getenv("IMPRESSLEARN_NATIVE_VARIANT");
  return env && *env ? parse(env) : best();
}

std::atomic<int>& current() {
  static std::atomic<int> v{static_cast<int>(initial())};
  return v;
}

}  // namespace

Variant variant() { return static_cast<Variant>(current().load(std::memory_order_relaxed)); }

bool combine_uses_lut(int64_t num_masks) {
  // Measured with bench/bench_native.py (combine_variants): byte tables beat the baseline-ISA
  // shift-and-add loop from about 16 masks on; the AVX2 and AVX-512 loops beat the tables at
  // every T (AVX-512 masked adds take one instruction per 16 mask bits).
  switch (variant()) {
    case Variant::lut:
      return num_masks >= 2;
    case Variant::generic:
      return num_masks >= 16;
    default:
      return false;
  }
}

std::string variant_name() { return kNames[static_cast<int>(variant())]; }

std::string set_variant(const std::string& name) {
  std::string previous = variant_name();
  current().store(static_cast<int>(parse(name)), std::memory_order_relaxed);
  return previous;
}

}  // namespace impresslearn_native
