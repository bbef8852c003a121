// Edge-popup top-k masks by radix select, never a sort.
//
// Every score maps to an unsigned key whose order is the order of the values (flip all bits of a
// negative number, set the sign bit of a positive one; -0 counts as +0 and every NaN as the
// largest value, as torch.sort does). Histograms of 16-bit digits, most significant first, narrow
// down tau, the key of the k-th largest score: one pass over the scores for fp16/bf16, two for
// fp32, four for fp64, fewer when a whole bin is kept. The mask keeps every key above tau and, of
// the keys equal to tau, the first ones in flat-index order (the tie rule). The last pass writes
// the float mask or the packed words directly.
#include "native.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

namespace impresslearn_native {
namespace {

// 16-bit digits: two passes over fp32 scores. 11-bit digits keep a chunk's histogram in L1 but
// need a third pass, which measured no faster (2.4 M scores, one thread).
constexpr int kDigitBits = 16;
// Below kSmallScores scores, clearing and scanning 2^16 bins each pass costs more than the
// histogram itself (a LeNet layer of 30 k or 1 k scores): 8-bit digits, more but tiny passes.
constexpr int kSmallDigitBits = 8;
constexpr int64_t kSmallScores = int64_t(1) << 16;
constexpr int64_t kGrain = 1 << 15;

template <class U, class F>
inline U bits_of(F v) {
  U u;
  std::memcpy(&u, &v, sizeof u);
  return u;
}

// Order-preserving keys; Key<T>::bits is the width the radix select walks.
template <class scalar_t>
struct Key;

// Integer-only and branch-free, so that a loop of them vectorises.
template <class U>
inline U float_key(U u) {
  constexpr U sign = U(1) << (8 * sizeof(U) - 1);
  constexpr U inf = sizeof(U) == 4 ? U(0x7F800000u) : U(0x7FF0000000000000ull);
  u = u == sign ? U(0) : u;  // -0 ties with +0
  const U flip = static_cast<U>(static_cast<std::make_signed_t<U>>(u) >> (8 * sizeof(U) - 1)) | sign;
  const U nan = (u & ~sign) > inf ? ~U(0) : U(0);  // every NaN is the largest key
  return (u ^ flip) | nan;
}

template <>
struct Key<float> {
  using type = uint32_t;
  static constexpr int bits = 32;
  static inline type of(float v) { return float_key(bits_of<type>(v)); }
};

template <>
struct Key<double> {
  using type = uint64_t;
  static constexpr int bits = 64;
  static inline type of(double v) { return float_key(bits_of<type>(v)); }
};

// fp16 and bf16 differ only in where NaN starts (exponent all ones, mantissa not zero).
template <uint16_t kInf>
inline uint32_t half_key(uint16_t u) {
  u = u == 0x8000u ? 0 : u;
  const uint32_t key = (u & 0x8000u) ? (~u & 0xFFFFu) : (u | 0x8000u);
  return (u & 0x7FFFu) > kInf ? 0xFFFFu : key;
}

template <>
struct Key<Half> {
  using type = uint32_t;
  static constexpr int bits = 16;
  static inline type of(Half v) { return half_key<0x7C00u>(v.x); }
};

template <>
struct Key<BFloat16> {
  using type = uint32_t;
  static constexpr int bits = 16;
  static inline type of(BFloat16 v) { return half_key<0x7F80u>(v.x); }
};

// Keys of a block of scores, in a loop of its own so that it vectorises (the histogram's
// increments, which cannot, then read them from L1).
constexpr int64_t kKeyBlock = 256;

// |v| when kAbs (edge-popup ranks |scores|), else v: clearing the sign bit, as torch.abs does
// (NaN stays NaN, -0 becomes +0), so selecting on it needs no |scores| tensor.
template <bool kAbs, class scalar_t>
inline scalar_t magnitude(scalar_t v) {
  if constexpr (!kAbs) {
    return v;
  } else if constexpr (std::is_same_v<scalar_t, Half> || std::is_same_v<scalar_t, BFloat16>) {
    v.x = static_cast<uint16_t>(v.x & 0x7FFFu);
    return v;
  } else {
    return std::fabs(v);
  }
}

template <bool kAbs, class scalar_t>
inline void keys_of(const scalar_t* x, int64_t n, typename Key<scalar_t>::type* keys) {
  for (int64_t i = 0; i < n; ++i) keys[i] = Key<scalar_t>::of(magnitude<kAbs>(x[i]));
}

// Score i is kept iff key > tau, or key == tau and i < cut: key >= tau before cut, key > tau after.
template <class key_t>
struct Threshold {
  key_t tau;
  int64_t cut;
};

// "key(x) >= lo" as a predicate on x. fp32/fp64 compare values instead of keys, which vectorises:
// !(x < v) holds for x >= v and for NaN, whose key is the largest.
template <class scalar_t>
struct KeyAtLeast {
  typename Key<scalar_t>::type lo;
  inline bool operator()(scalar_t x) const { return Key<scalar_t>::of(x) >= lo; }
};

template <class F>
struct ValueAtLeast {
  F v;
  inline bool operator()(F x) const { return !(x < v); }
};

struct KeepNone {
  template <class F>
  inline bool operator()(F) const { return false; }
};

// The value whose key is `key` (inverse of Key<F>::of away from NaN).
template <class F, class U>
inline F value_of(U key) {
  const U sign = U(1) << (8 * sizeof(U) - 1);
  const U u = (key & sign) ? (key ^ sign) : ~key;
  F v;
  std::memcpy(&v, &u, sizeof v);
  return v;
}

// Calls fn(pred) with the fastest predicate equal to "key(x) >= lo"; lo past the largest key keeps none.
template <class scalar_t, class key_t, class Fn>
void with_at_least(key_t lo, bool past_end, const Fn& fn) {
  if (past_end) return fn(KeepNone{});
  if constexpr (std::is_same_v<scalar_t, float> || std::is_same_v<scalar_t, double>) {
    const scalar_t v = value_of<scalar_t>(lo);
    if (!std::isnan(v)) return fn(ValueAtLeast<scalar_t>{v});
  }
  fn(KeyAtLeast<scalar_t>{lo});
}

// Calls fn(before, after): the predicates for scores before th.cut and from th.cut on.
template <class scalar_t, class key_t, class Fn>
void with_sides(const Threshold<key_t>& th, const Fn& fn) {
  with_at_least<scalar_t>(th.tau, false, [&](const auto& before) {
    with_at_least<scalar_t>(key_t(th.tau + 1), th.tau == ~key_t(0), [&](const auto& after) { fn(before, after); });
  });
}

// out[i] = pred(x[i]) as 1 or 0; restrict and a predicate by value let the loop vectorise.
template <class scalar_t, class Pred>
void write_range(const scalar_t* __restrict x, scalar_t* __restrict out, int64_t n, const Pred pred) {
  for (int64_t i = 0; i < n; ++i) out[i] = pred(x[i]) ? scalar_t(1) : scalar_t(0);
}

// Bits j < n of the result: pred(x[j]).
template <class scalar_t, class Pred>
inline uint32_t pack_word_loop(const scalar_t* x, int64_t n, const Pred& pred) {
  uint32_t word = 0;
  for (int64_t j = 0; j < n; ++j) word |= static_cast<uint32_t>(pred(x[j])) << j;
  return word;
}

template <class scalar_t, class Pred>
inline uint32_t pack_word(const scalar_t* x, int64_t n, const Pred& pred) {
  return pack_word_loop(x, n, pred);
}

#ifdef __SSE2__
// Whole fp32 words by compare + movemask, four bits at a time.
inline uint32_t pack_word(const float* x, int64_t n, const ValueAtLeast<float>& pred) {
  if (n != 32) return pack_word_loop(x, n, pred);
  const __m128 v = _mm_set1_ps(pred.v);
  uint32_t word = 0;
  for (int q = 0; q < 8; ++q)
    word |= static_cast<uint32_t>(_mm_movemask_ps(_mm_cmpnlt_ps(_mm_loadu_ps(x + 4 * q), v))) << (4 * q);
  return word;
}

#endif

// Fixed chunks, one per thread: each owns its histogram or count, whatever thread runs it.
int64_t num_chunks(int64_t n) { return std::max<int64_t>(1, std::min<int64_t>(num_threads(), n / kGrain)); }

template <class F>
void for_chunks(int64_t n, int64_t chunks, const F& fn) {
  parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) fn(c, n * c / chunks, n * (c + 1) / chunks);
  });
}

// The flat index after the m-th score whose key equals tau (m >= 1 of them exist).
template <bool kAbs, class scalar_t>
int64_t cut_after(const scalar_t* x, int64_t n, typename Key<scalar_t>::type tau, int64_t m) {
  const int64_t chunks = num_chunks(n);
  std::vector<int64_t> equal(chunks, 0);
  for_chunks(n, chunks, [&](int64_t c, int64_t b, int64_t e) {
    int64_t count = 0;
    for (int64_t i = b; i < e; ++i) count += Key<scalar_t>::of(magnitude<kAbs>(x[i])) == tau;
    equal[c] = count;
  });
  for (int64_t c = 0; c < chunks; ++c) {
    if (equal[c] < m) {
      m -= equal[c];
      continue;
    }
    for (int64_t i = n * c / chunks;; ++i)
      if (Key<scalar_t>::of(magnitude<kAbs>(x[i])) == tau && --m == 0) return i + 1;
  }
  fail("popup: internal error, fewer tied scores than counted");
}

// The threshold of the k largest of x (of |x| when kAbs).
template <bool kAbs, class scalar_t>
Threshold<typename Key<scalar_t>::type> select_top(const scalar_t* x, int64_t n, int64_t k) {
  using K = Key<scalar_t>;
  using key_t = typename K::type;
  const int64_t chunks = num_chunks(n);
  const int digit_bits = n < kSmallScores ? kSmallDigitBits : kDigitBits;
  const int64_t bins = int64_t(1) << digit_bits;
  // Counts fit 32 bits (at most 2^32 - 1 scores); one chunk counts straight into the sum.
  std::vector<uint32_t> local(static_cast<size_t>(chunks * bins));
  std::vector<uint32_t> sum(chunks > 1 ? bins : 0);
  const uint32_t* hist = chunks > 1 ? sum.data() : local.data();
  key_t prefix = 0, known = 0;  // the digits of tau found so far, and which bits they cover
  int64_t remaining = k;        // scores still to keep among those that match the prefix
  for (int shift = K::bits; shift > 0;) {
    const int width = std::min(digit_bits, shift);
    shift -= width;
    const key_t digits = (key_t(1) << width) - 1;
    const int64_t used = int64_t(1) << width;  // the bins this digit can reach
    for (int64_t c = 0; c < chunks; ++c) std::fill_n(local.data() + c * bins, used, 0u);
    for_chunks(n, chunks, [&](int64_t c, int64_t b, int64_t e) {
      uint32_t* h = local.data() + c * bins;
      key_t keys[kKeyBlock];
      for (int64_t i0 = b; i0 < e; i0 += kKeyBlock) {
        const int64_t len = std::min(kKeyBlock, e - i0);
        keys_of<kAbs>(x + i0, len, keys);
        if (known == 0) {
          for (int64_t i = 0; i < len; ++i) ++h[(keys[i] >> shift) & digits];
        } else {
          for (int64_t i = 0; i < len; ++i)
            if ((keys[i] & known) == prefix) ++h[(keys[i] >> shift) & digits];
        }
      }
    });
    if (chunks > 1) {
      std::fill_n(sum.data(), used, 0u);
      for (int64_t c = 0; c < chunks; ++c)
        for (int64_t d = 0; d < used; ++d) sum[d] += local[c * bins + d];
    }
    int64_t d = static_cast<int64_t>(digits), above = 0;
    while (above + int64_t(hist[d]) < remaining) above += hist[d--];
    remaining -= above;
    prefix |= key_t(d) << shift;
    known |= digits << shift;
    if (int64_t(hist[d]) == remaining) return {prefix, n};  // the whole bin is kept: every key >= prefix
  }
  return {prefix, cut_after<kAbs>(x, n, prefix, remaining)};
}

// A 0-d tensor is one score for popup_mask; popup_pack needs a weight shape (at least one dimension).
void check_scores(const char* op, const Tensor& scores, int64_t k, bool packed) {
  IL_CHECK(scores.is_cpu(), op, ": the native ops take CPU tensors");
  IL_CHECK(is_floating(scores.scalar_type()), op, ": scores must be floating point, got ",
           torch::headeronly::toString(scores.scalar_type()));
  IL_CHECK(scores.numel() > 0, op, ": scores must be a non-empty tensor");
  IL_CHECK(!packed || scores.dim() >= 1, op, ": scores must have at least one dimension");
  IL_CHECK(1 <= k && k <= scores.numel(), op, ": k must lie in [1, ", scores.numel(), "], got ", k);
  IL_CHECK(scores.numel() < (int64_t(1) << 32), op, ": at most 2^32 - 1 scores are supported");
}

// The arithmetic dtype of the fused kernels: what torch computes a half-precision product in.
template <class scalar_t>
using acc_of = std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;

// weight * m for m in {0, 1}, rounded as torch's weight * mask rounds it (0 * -w = -0, 0 * NaN = NaN).
template <class scalar_t>
inline scalar_t times_bit(scalar_t w, bool keep) {
  using acc = acc_of<scalar_t>;
  // The bit as a number, multiplied always: a multiply under a condition stays a branch (it may trap).
  return static_cast<scalar_t>(static_cast<acc>(w) * static_cast<acc>(keep));
}

// torch.sgn of a real number: 0 for ±0 and NaN.
template <class acc>
inline acc sgn_of(acc s) {
  return static_cast<acc>((acc(0) < s) - (s < acc(0)));
}

// The loops of the fused ops: raw restrict pointers and a branch-free body, so that they
// vectorise; a lambda capturing its constants by reference compiled to a branch per element
// (random bits: a mispredict every other score).
template <bool kAbs, class scalar_t, class Pred>
void write_product(const scalar_t* __restrict w, const scalar_t* __restrict x, scalar_t* __restrict out, int64_t n,
                   const Pred pred) {
  for (int64_t i = 0; i < n; ++i) out[i] = times_bit(w[i], pred(magnitude<kAbs>(x[i])));
}

struct NonNegative {  // scores >= 0: false for NaN
  template <class F>
  inline bool operator()(F x) const { return x >= F(0); }
};

template <class scalar_t>
void write_grad_scores(const scalar_t* __restrict g, const scalar_t* __restrict w, const scalar_t* __restrict x,
                       scalar_t* __restrict out, int64_t n) {
  using acc = acc_of<scalar_t>;
  for (int64_t i = 0; i < n; ++i) {
    // grad * weight rounds to scalar_t first, as the composed ops do; the sign is exact.
    const scalar_t gw = static_cast<scalar_t>(static_cast<acc>(g[i]) * static_cast<acc>(w[i]));
    out[i] = static_cast<scalar_t>(static_cast<acc>(gw) * sgn_of(static_cast<acc>(x[i])));
  }
}

// The fused ops take a weight and scores of one shape and one floating dtype, on the CPU.
void check_weight_scores(const char* op, const Tensor& weight, const Tensor& scores) {
  IL_CHECK(weight.is_cpu() && scores.is_cpu(), op, ": the native ops take CPU tensors");
  IL_CHECK(is_floating(scores.scalar_type()), op, ": scores must be floating point, got ",
           torch::headeronly::toString(scores.scalar_type()));
  IL_CHECK(weight.scalar_type() == scores.scalar_type(), op, ": weight and scores must have one dtype, got ",
           torch::headeronly::toString(weight.scalar_type()), " and ", torch::headeronly::toString(scores.scalar_type()));
  IL_CHECK(sizes_of(weight) == sizes_of(scores), op, ": weight of shape ", shape_of(weight),
           " and scores of shape ", shape_of(scores), " differ");
}

}  // namespace

Tensor popup_mask(const Tensor& scores_in, int64_t k) {
  check_scores("popup_mask", scores_in, k, false);
  const Tensor scores = torch::stable::contiguous(scores_in);
  Tensor out = empty_like_cpu(scores);
  const int64_t n = scores.numel();
  dispatch_floating(scores.scalar_type(), "popup_mask: scores must be floating point", [&](auto tag) {
    using scalar_t = decltype(tag);
    const scalar_t* x = data_of<scalar_t>(scores);
    scalar_t* o = mutable_data_of<scalar_t>(out);
    const auto th = select_top<false>(x, n, k);
    with_sides<scalar_t>(th, [&](const auto& before, const auto& after) {
      parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) {
        const int64_t mid = std::min(std::max(b, th.cut), e);
        write_range(x + b, o + b, mid - b, before);
        write_range(x + mid, o + mid, e - mid, after);
      });
    });
  });
  return out;
}

Tensor popup_pack(const Tensor& scores_in, int64_t k) {
  check_scores("popup_pack", scores_in, k, true);
  const Tensor scores = torch::stable::contiguous(scores_in);
  const int64_t n = scores.numel(), rows = scores.size(0), cols = n / rows, nwords = (cols + 31) / 32;
  Tensor out = empty_cpu({1, rows, nwords}, ScalarType::Int);
  dispatch_floating(scores.scalar_type(), "popup_pack: scores must be floating point", [&](auto tag) {
    using scalar_t = decltype(tag);
    const scalar_t* x = data_of<scalar_t>(scores);
    uint32_t* o = mutable_data_of<uint32_t>(out);
    const auto th = select_top<false>(x, n, k);
    with_sides<scalar_t>(th, [&](const auto& before, const auto& after) {
      parallel_for(0, rows * nwords, std::max<int64_t>(1, kGrain / 32), [&](int64_t b, int64_t e) {
        for (int64_t q = b; q < e; ++q) {
          const int64_t r = q / nwords, c0 = 32 * (q % nwords), n = std::min<int64_t>(32, cols - c0);
          const int64_t start = r * cols + c0, split = std::min(std::max<int64_t>(th.cut - start, 0), n);
          const scalar_t* xq = x + start;
          uint32_t word = 0;
          if (split > 0) word = pack_word(xq, split, before);
          if (split < n) word |= pack_word(xq + split, n - split, after) << split;
          o[q] = word;
        }
      });
    });
  });
  return out;
}

Tensor threshold_mask(const Tensor& scores_in) {
  IL_CHECK(scores_in.is_cpu(), "threshold_mask: the native ops take CPU tensors");
  const Tensor scores = torch::stable::contiguous(scores_in);
  Tensor out = empty_like_cpu(scores);
  dispatch_floating(scores.scalar_type(), "threshold_mask: scores must be floating point", [&](auto tag) {
    using scalar_t = decltype(tag);
    const scalar_t* x = data_of<scalar_t>(scores);
    scalar_t* o = mutable_data_of<scalar_t>(out);
    const scalar_t one(1), zero(0);
    parallel_for(0, scores.numel(), kGrain, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) o[i] = x[i] >= scalar_t(0) ? one : zero;  // NaN: 0
    });
  });
  return out;
}

// weight * popup_mask(|scores|, k): the selection on |scores| (no |scores| tensor), then one pass
// that writes the product (no float mask).
Tensor popup_weight(const Tensor& weight_in, const Tensor& scores_in, int64_t k) {
  check_scores("popup_weight", scores_in, k, false);
  check_weight_scores("popup_weight", weight_in, scores_in);
  const Tensor scores = torch::stable::contiguous(scores_in);
  const Tensor weight = torch::stable::contiguous(weight_in);
  Tensor out = empty_like_cpu(scores);
  const int64_t n = scores.numel();
  dispatch_floating(scores.scalar_type(), "popup_weight: scores must be floating point", [&](auto tag) {
    using scalar_t = decltype(tag);
    const scalar_t* x = data_of<scalar_t>(scores);
    const scalar_t* w = data_of<scalar_t>(weight);
    scalar_t* o = mutable_data_of<scalar_t>(out);
    const auto th = select_top<true>(x, n, k);
    with_sides<scalar_t>(th, [&](const auto& before, const auto& after) {
      parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) {
        const int64_t mid = std::min(std::max(b, th.cut), e);
        write_product<true>(w + b, x + b, o + b, mid - b, before);
        write_product<true>(w + mid, x + mid, o + mid, e - mid, after);
      });
    });
  });
  return out;
}

// The scores' gradient of popup_weight: grad * weight * sgn(scores) in one pass (straight
// through the mask, then through |scores|), rounded once, as the composed ops round it.
Tensor popup_weight_grad_scores(const Tensor& grad_in, const Tensor& weight_in, const Tensor& scores_in) {
  check_weight_scores("popup_weight_grad_scores", weight_in, scores_in);
  check_weight_scores("popup_weight_grad_scores", grad_in, scores_in);
  const Tensor grad = torch::stable::contiguous(grad_in);
  const Tensor weight = torch::stable::contiguous(weight_in);
  const Tensor scores = torch::stable::contiguous(scores_in);
  Tensor out = empty_like_cpu(scores);
  dispatch_floating(scores.scalar_type(), "popup_weight_grad_scores: scores must be floating point", [&](auto tag) {
    using scalar_t = decltype(tag);
    const scalar_t* g = data_of<scalar_t>(grad);
    const scalar_t* w = data_of<scalar_t>(weight);
    const scalar_t* x = data_of<scalar_t>(scores);
    scalar_t* o = mutable_data_of<scalar_t>(out);
    parallel_for(0, scores.numel(), kGrain,
                 [&](int64_t b, int64_t e) { write_grad_scores(g + b, w + b, x + b, o + b, e - b); });
  });
  return out;
}

// weight * (scores >= 0) in one pass (SupSup's threshold masks; NaN scores drop their weight).
Tensor threshold_weight(const Tensor& weight_in, const Tensor& scores_in) {
  check_weight_scores("threshold_weight", weight_in, scores_in);
  const Tensor scores = torch::stable::contiguous(scores_in);
  const Tensor weight = torch::stable::contiguous(weight_in);
  Tensor out = empty_like_cpu(scores);
  dispatch_floating(scores.scalar_type(), "threshold_weight: scores must be floating point", [&](auto tag) {
    using scalar_t = decltype(tag);
    const scalar_t* x = data_of<scalar_t>(scores);
    const scalar_t* w = data_of<scalar_t>(weight);
    scalar_t* o = mutable_data_of<scalar_t>(out);
    parallel_for(0, scores.numel(), kGrain, [&](int64_t b, int64_t e) {
      write_product<false>(w + b, x + b, o + b, e - b, NonNegative{});
    });
  });
  return out;
}

}  // namespace impresslearn_native
