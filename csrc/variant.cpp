// Kernel variant selection: CPU detection, the IMPRESSLEARN_NATIVE_VARIANT override, and the
// measured rule for when combine uses byte tables.
#include "variant.h"

#include "stable_tensor.h"

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
      IL_CHECK(cpu_runs(v), "impresslearn native: this CPU cannot run the '", name, "' kernels");
      return v;
    }
  }
  fail("impresslearn native: unknown kernel variant '", name, "'; choose auto, generic, lut, avx2 or avx512");
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
  // Measured with `python bench/bench_native.py --only variants` (512x512x3x3 layer, Xeon with
  // AVX-512): the byte tables only tie the portable shift-and-add loop (T = 75: 42 against 43 ms,
  // T = 250: 133 against 129 ms) and lose to the AVX2 (24, 73 ms) and AVX-512 loops (14, 39 ms),
  // whose masked adds take one instruction per 16 mask bits. So they run only when asked for.
  return num_masks >= 1 && variant() == Variant::lut;
}

std::string variant_name() { return kNames[static_cast<int>(variant())]; }

std::string set_variant(std::string name) {
  std::string previous = variant_name();
  current().store(static_cast<int>(parse(name)), std::memory_order_relaxed);
  return previous;
}

}  // namespace impresslearn_native
