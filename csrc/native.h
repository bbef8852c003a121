// The native CPU ops (namespace impresslearn_native), one declaration per op; the schemas are in
// register.cpp and the Python side (fakes, backend primitives) in impresslearn/native.py.
#pragma once

#include "stable_tensor.h"

#include <cstdint>
#include <string>

namespace impresslearn_native {

// weight * Σ_t alpha[t] * masks[t]; alpha [T] (per layer) or [T, rows] (per output channel).
Tensor combine(const Tensor& weight, const Tensor& words, const Tensor& alpha);
// d alpha[t] = Σ grad ⊙ weight ⊙ masks[t] (per row for per-channel alpha), in alpha's dtype.
Tensor combine_grad_alpha(const Tensor& grad, const Tensor& weight, const Tensor& words, const Tensor& alpha);

// weight * masks[0] for words holding one mask (a finished task's effective weight), in one pass.
Tensor masked_weight(const Tensor& weight, const Tensor& words);

// 1.0 at the k largest scores (ties toward the lower flat index), else 0.0; and the same mask as
// packed words [1, rows, nw]; and SupSup's scores >= 0 masks.
Tensor popup_mask(const Tensor& scores, int64_t k);
Tensor popup_pack(const Tensor& scores, int64_t k);
Tensor threshold_mask(const Tensor& scores);

// Fused edge-popup / SupSup steps (weight and scores of one shape and dtype): weight * popup_mask(|scores|, k)
// and its scores' gradient grad * weight * sgn(scores); weight * (scores >= 0).
Tensor popup_weight(const Tensor& weight, const Tensor& scores, int64_t k);
Tensor popup_weight_grad_scores(const Tensor& grad, const Tensor& weight, const Tensor& scores);
Tensor threshold_weight(const Tensor& weight, const Tensor& scores);

// bits [T, rows, cols] (bool or any real dtype, nonzero = 1) <-> int32 words [T, rows, ceil(cols/32)].
Tensor pack_bits(const Tensor& bits);
Tensor unpack_bits(const Tensor& words, int64_t cols);

}  // namespace impresslearn_native
