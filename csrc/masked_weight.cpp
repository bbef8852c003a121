// masked_weight: weight * mask for one packed mask, in one pass over the weight (no float mask).
//
//   out[r, c] = weight[r, c] * bit(r, c)
//
// The product with the bit as a number (not a select), so that an unset bit gives weight * 0
// exactly as the reference and combine(weight, words, [1]) do: -0 for a negative weight, NaN for
// an infinite or NaN one (docs/design.md §5.4). It is what a finished SupSup task's forward and
// the per-task weights of task_row_linear read (docs/design.md §7.10): combine with one mask
// made a coefficient buffer and a second pass.
#include "native.h"
#include "variant.h"

#include <algorithm>
#include <type_traits>

namespace impresslearn_native {
namespace {

constexpr int64_t kWordBits = 32;
constexpr int64_t kGrainWeights = 1 << 16;  // weights below which threads are not worth it

// Bit j tested against a constant (no per-lane shifts on the baseline ISA), so the loop vectorises.
alignas(64) constexpr uint32_t kBit[kWordBits] = {
    1u << 0,  1u << 1,  1u << 2,  1u << 3,  1u << 4,  1u << 5,  1u << 6,  1u << 7,  1u << 8,  1u << 9,  1u << 10,
    1u << 11, 1u << 12, 1u << 13, 1u << 14, 1u << 15, 1u << 16, 1u << 17, 1u << 18, 1u << 19, 1u << 20, 1u << 21,
    1u << 22, 1u << 23, 1u << 24, 1u << 25, 1u << 26, 1u << 27, 1u << 28, 1u << 29, 1u << 30, 1u << 31};

template <class scalar_t, class acc_t>
IL_ALWAYS_INLINE void mask_row_body(const scalar_t* __restrict w, const uint32_t* __restrict words, int64_t cols,
                                    scalar_t* __restrict out) {
  const int64_t full = cols / kWordBits;
  for (int64_t wi = 0; wi < full; ++wi) {
    const uint32_t bits = words[wi];
    const scalar_t* wr = w + kWordBits * wi;
    scalar_t* o = out + kWordBits * wi;
    for (int j = 0; j < kWordBits; ++j) {
      const acc_t on = (bits & kBit[j]) ? acc_t(1) : acc_t(0);
      o[j] = static_cast<scalar_t>(static_cast<acc_t>(wr[j]) * on);
    }
  }
  for (int64_t c = kWordBits * full; c < cols; ++c) {
    const acc_t on = (words[full] & kBit[c - kWordBits * full]) ? acc_t(1) : acc_t(0);
    out[c] = static_cast<scalar_t>(static_cast<acc_t>(w[c]) * on);
  }
}

template <class scalar_t, class acc_t>
void mask_row(const scalar_t* w, const uint32_t* words, int64_t cols, scalar_t* out) {
  mask_row_body<scalar_t, acc_t>(w, words, cols, out);
}

#ifdef IL_X86
// The same loop compiled for AVX2: eight lanes where the baseline build has four (fp32 only, the
// dtype of inference).
IL_TARGET_AVX2 void mask_row_avx2_f32(const float* w, const uint32_t* words, int64_t cols, float* out) {
  mask_row_body<float, float>(w, words, cols, out);
}
#endif

template <class scalar_t, class acc_t>
auto row_kernel() {
#ifdef IL_X86
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (variant() == Variant::avx2 || variant() == Variant::avx512) return &mask_row_avx2_f32;
  }
#endif
  return &mask_row<scalar_t, acc_t>;
}

}  // namespace

Tensor masked_weight(const Tensor& weight_in, const Tensor& words_in) {
  IL_CHECK(weight_in.is_cpu() && words_in.is_cpu(), "masked_weight: the native ops take CPU tensors");
  IL_CHECK(is_floating(weight_in.scalar_type()), "masked_weight: weight must be floating point, got ",
           torch::headeronly::toString(weight_in.scalar_type()));
  IL_CHECK(words_in.scalar_type() == ScalarType::Int, "masked_weight: packed words must be int32, got ",
           torch::headeronly::toString(words_in.scalar_type()));
  IL_CHECK(weight_in.dim() >= 1, "masked_weight: weight must have at least one dimension");
  const int64_t rows = weight_in.size(0);
  int64_t cols = 1;
  for (int64_t d = 1; d < weight_in.dim(); ++d) cols *= weight_in.size(d);
  const int64_t nwords = (cols + kWordBits - 1) / kWordBits;
  IL_CHECK(words_in.dim() == 3 && words_in.size(0) == 1 && words_in.size(1) == rows && words_in.size(2) == nwords,
           "masked_weight: packed words of shape ", shape_of(words_in), " are not one mask over a weight of shape ",
           shape_of(weight_in), " (expected [1, ", rows, ", ", nwords, "])");
  const Tensor weight = torch::stable::contiguous(weight_in), words = torch::stable::contiguous(words_in);
  Tensor out = empty_like_cpu(weight);
  if (weight.numel() == 0) return out;
  const uint32_t* bits = data_of<uint32_t>(words);
  dispatch_floating(weight.scalar_type(), "masked_weight: weight must be floating point", [&](auto tag) {
    using scalar_t = decltype(tag);
    using acc_t = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
    const scalar_t* w = data_of<scalar_t>(weight);
    scalar_t* o = mutable_data_of<scalar_t>(out);
    const auto kernel = row_kernel<scalar_t, acc_t>();
    const int64_t grain = std::max<int64_t>(1, kGrainWeights / std::max<int64_t>(1, cols));
    parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) kernel(w + r * cols, bits + r * nwords, cols, o + r * cols);
    });
  });
  return out;
}

}  // namespace impresslearn_native
