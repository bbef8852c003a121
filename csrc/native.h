// The native CPU ops (namespace impresslearn_native), one declaration per op; the schemas are in
// register.cpp and the Python side (fakes, backend primitives) in impresslearn/native.py.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

namespace impresslearn_native {

// weight * Σ_t alpha[t] * masks[t]; alpha [T] (per layer) or [T, rows] (per output channel).
at::Tensor combine(const at::Tensor& weight, const at::Tensor& words, const at::Tensor& alpha);
// d alpha[t] = Σ grad ⊙ weight ⊙ masks[t] (per row for per-channel alpha), in alpha's dtype.
at::Tensor combine_grad_alpha(const at::Tensor& grad, const at::Tensor& weight, const at::Tensor& words,
                              const at::Tensor& alpha);

// 1.0 at the k largest scores (ties toward the lower flat index), else 0.0; and the same mask as
// packed words [1, rows, nw]; and SupSup's scores >= 0 masks.
at::Tensor popup_mask(const at::Tensor& scores, int64_t k);
at::Tensor popup_pack(const at::Tensor& scores, int64_t k);
at::Tensor threshold_mask(const at::Tensor& scores);

// bits [T, rows, cols] (bool or any dtype, nonzero = 1) <-> int32 words [T, rows, ceil(cols/32)].
at::Tensor pack_bits(const at::Tensor& bits);
at::Tensor unpack_bits(const at::Tensor& words, int64_t cols);

}  // namespace impresslearn_native
