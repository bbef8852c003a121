// Packing masks into the int32 word layout of impresslearn.format and back, one row of one mask
// at a time: bits [T, rows, cols] <-> words [T, rows, ceil(cols / 32)], bit j of word w of a row
// is column 32 * w + j, padding bits 0. Nothing wider than the input or output is allocated.
#include "native.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>

namespace impresslearn_native {
namespace {

constexpr int64_t kGrainBits = 1 << 16;

template <class scalar_t>
void pack_rows(const scalar_t* bits, int64_t num_rows, int64_t cols, int64_t nwords, uint32_t* words) {
  at::parallel_for(0, num_rows, std::max<int64_t>(1, kGrainBits / cols), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const scalar_t* row = bits + r * cols;
      for (int64_t w = 0; w < nwords; ++w) {
        const int64_t c0 = 32 * w, n = std::min<int64_t>(32, cols - c0);
        uint32_t word = 0;
        for (int64_t j = 0; j < n; ++j) word |= static_cast<uint32_t>(row[c0 + j] != scalar_t(0)) << j;
        words[r * nwords + w] = word;
      }
    }
  });
}

}  // namespace

at::Tensor pack_bits(const at::Tensor& bits_in) {
  TORCH_CHECK(bits_in.device().is_cpu(), "pack_bits: the native ops take CPU tensors");
  TORCH_CHECK(bits_in.dim() == 3, "pack_bits: bits must have shape [T, rows, cols], got ", bits_in.sizes());
  TORCH_CHECK(!bits_in.is_complex(), "pack_bits: bits must be bool, integer or floating, got ", bits_in.scalar_type());
  // bool is stored as one byte 0/1: read it as uint8.
  const at::Tensor bits = bits_in.scalar_type() == at::kBool ? bits_in.contiguous().view(at::kByte) : bits_in.contiguous();
  const int64_t num_rows = bits.size(0) * bits.size(1), cols = bits.size(2), nwords = (cols + 31) / 32;
  at::Tensor words = at::empty({bits.size(0), bits.size(1), nwords}, bits.options().dtype(at::kInt));
  if (words.numel() == 0) return words;
  AT_DISPATCH_ALL_TYPES_AND2(at::kHalf, at::kBFloat16, bits.scalar_type(), "impresslearn_native::pack_bits", [&] {
    pack_rows<scalar_t>(bits.const_data_ptr<scalar_t>(), num_rows, cols, nwords,
                        reinterpret_cast<uint32_t*>(words.mutable_data_ptr<int32_t>()));
  });
  return words;
}

at::Tensor unpack_bits(const at::Tensor& words_in, int64_t cols) {
  TORCH_CHECK(words_in.device().is_cpu(), "unpack_bits: the native ops take CPU tensors");
  TORCH_CHECK(words_in.scalar_type() == at::kInt && words_in.dim() == 3,
              "unpack_bits: words must be int32 [T, rows, nw], got ", words_in.scalar_type(), " ", words_in.sizes());
  const int64_t nwords = words_in.size(2);
  TORCH_CHECK(cols >= 0 && (cols + 31) / 32 == nwords, "unpack_bits: ", nwords, " words per row cannot hold ", cols,
              " columns");
  const at::Tensor words = words_in.contiguous();
  const int64_t num_rows = words.size(0) * words.size(1);
  at::Tensor out = at::empty({words.size(0), words.size(1), cols}, words.options().dtype(at::kBool));
  if (out.numel() == 0) return out;
  const uint32_t* wp = reinterpret_cast<const uint32_t*>(words.const_data_ptr<int32_t>());
  uint8_t* op = reinterpret_cast<uint8_t*>(out.mutable_data_ptr<bool>());
  at::parallel_for(0, num_rows, std::max<int64_t>(1, kGrainBits / std::max<int64_t>(cols, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      uint8_t* row = op + r * cols;
      for (int64_t w = 0; w < nwords; ++w) {
        const uint32_t word = wp[r * nwords + w];
        const int64_t c0 = 32 * w, n = std::min<int64_t>(32, cols - c0);
        for (int64_t j = 0; j < n; ++j) row[c0 + j] = static_cast<uint8_t>((word >> j) & 1u);
      }
    }
  });
  return out;
}

}  // namespace impresslearn_native
