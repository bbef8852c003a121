// Packing masks into the int32 word layout of impresslearn.format and back, one row of one mask
// at a time: bits [T, rows, cols] <-> words [T, rows, ceil(cols / 32)], bit j of word w of a row
// is column 32 * w + j, padding bits 0. Nothing wider than the input or output is allocated.
#include "native.h"

#include <algorithm>

namespace impresslearn_native {
namespace {

constexpr int64_t kGrainBits = 1 << 16;

template <class scalar_t>
void pack_rows(const scalar_t* bits, int64_t num_rows, int64_t cols, int64_t nwords, uint32_t* words) {
  parallel_for(0, num_rows, std::max<int64_t>(1, kGrainBits / cols), [&](int64_t r0, int64_t r1) {
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

Tensor pack_bits(const Tensor& bits_in) {
  IL_CHECK(bits_in.is_cpu(), "pack_bits: the native ops take CPU tensors");
  IL_CHECK(bits_in.dim() == 3, "pack_bits: bits must have shape [T, rows, cols], got ", shape_of(bits_in));
  const Tensor bits = torch::stable::contiguous(bits_in);
  const int64_t num_rows = bits.size(0) * bits.size(1), cols = bits.size(2), nwords = (cols + 31) / 32;
  const ScalarType dtype = bits.scalar_type();
  IL_CHECK(is_real(dtype), "pack_bits: bits must be bool, integer or floating, got ", torch::headeronly::toString(dtype));
  Tensor words = empty_cpu({bits.size(0), bits.size(1), nwords}, ScalarType::Int);
  if (words.numel() == 0) return words;
  // bool is stored as one byte 0/1: dispatch_real reads it as uint8.
  dispatch_real(dtype, "pack_bits: bits must be bool, integer or floating", [&](auto tag) {
    using scalar_t = decltype(tag);
    pack_rows<scalar_t>(data_of<scalar_t>(bits), num_rows, cols, nwords, mutable_data_of<uint32_t>(words));
  });
  return words;
}

Tensor unpack_bits(const Tensor& words_in, int64_t cols) {
  IL_CHECK(words_in.is_cpu(), "unpack_bits: the native ops take CPU tensors");
  IL_CHECK(words_in.scalar_type() == ScalarType::Int && words_in.dim() == 3,
           "unpack_bits: words must be int32 [T, rows, nw], got ", torch::headeronly::toString(words_in.scalar_type()),
           " ", shape_of(words_in));
  const int64_t nwords = words_in.size(2);
  IL_CHECK(cols >= 0 && (cols + 31) / 32 == nwords, "unpack_bits: ", nwords, " words per row cannot hold ", cols,
           " columns");
  const Tensor words = torch::stable::contiguous(words_in);
  const int64_t num_rows = words.size(0) * words.size(1);
  Tensor out = empty_cpu({words.size(0), words.size(1), cols}, ScalarType::Bool);
  if (out.numel() == 0) return out;
  const uint32_t* wp = data_of<uint32_t>(words);
  uint8_t* op = mutable_data_of<uint8_t>(out);
  parallel_for(0, num_rows, std::max<int64_t>(1, kGrainBits / std::max<int64_t>(cols, 1)), [&](int64_t r0, int64_t r1) {
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
