// Which inner-loop variant the kernels run, and the compiler attributes that build the x86 SIMD
// variants inside one portable binary (the CPU is checked when the library loads, not at build).
#pragma once

#include <cstdint>
#include <string>

#if defined(_MSC_VER)
#define IL_ALWAYS_INLINE __forceinline
#else
#define IL_ALWAYS_INLINE inline __attribute__((always_inline))
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define IL_X86 1
#define IL_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define IL_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")))
#endif

namespace impresslearn_native {

// generic: portable loops the compiler vectorises for the baseline ISA (SSE2 on x86-64, NEON on arm64)
// lut:     combine through 256-entry byte tables per group of 8 masks (other kernels: generic);
//          measured no faster than generic, so only used when chosen
// avx2, avx512: hand-vectorised x86 paths (the default where the CPU has them)
enum class Variant : int { generic = 0, lut = 1, avx2 = 2, avx512 = 3 };

// The variant in use: the best this CPU supports, unless set_variant (or the environment variable
// IMPRESSLEARN_NATIVE_VARIANT when the library loads) chose another.
Variant variant();
// Whether combine with `num_masks` masks goes through byte tables under the current variant.
bool combine_uses_lut(int64_t num_masks);

// Ops for tests and benchmarks: the current name, and switch ("auto" restores the default); the
// switch returns the previous name and refuses a variant this CPU cannot run.
std::string variant_name();
std::string set_variant(std::string name);

}  // namespace impresslearn_native
