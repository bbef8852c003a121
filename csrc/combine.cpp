// combine and its alpha gradient straight from the packed bits (no dense [T, ...] mask).
//
//   combine:            out[r, c]   = weight[r, c] * Σ_t alpha[t(, r)] * bit(t, r, c)
//   combine_grad_alpha: dalpha[t(, r)] = Σ_c grad[r, c] * weight[r, c] * bit(t, r, c)
//
// Both walk the flat word index r * nwords + w in segments of at most kSegWords words, so the
// per-segment buffer (coefficients, or grad * weight) stays in L1, and take the masks
// kMaskChunk at a time. Inner loops keep 32 column accumulators per word and add alpha[t] (or
// grad * weight) where a bit is set: masked adds on AVX-512 (the word is the lane mask),
// compare-and-add on AVX2, a loop the compiler vectorises elsewhere, or 256-entry byte tables
// per group of 8 masks (variant.h says which runs).
#include "native.h"
#include "variant.h"

#include <algorithm>
#include <vector>

#ifdef IL_X86
#include <immintrin.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
#define IL_PREFETCH(addr) __builtin_prefetch(addr)
#else
#define IL_PREFETCH(addr)
#endif

namespace impresslearn_native {
namespace {

constexpr int64_t kWordBits = 32;
constexpr int64_t kSegWords = 64;  // 2048 columns: 8 KiB of fp32 coefficients per segment
constexpr int64_t kMaskChunk = 32;  // masks per pass over a segment; a multiple of 8 (byte tables)

// Work (mask bits) below which a parallel loop is not worth its threads (about 0.1 ms).
constexpr int64_t kGrainBits = 1 << 20;

// One mask's words of a segment are contiguous but short (a few cache lines), too short for the
// hardware prefetcher to start on: the kernels ask for the runs they read next ahead of use.
IL_ALWAYS_INLINE void prefetch_run(const uint32_t* p, int64_t nwords) {
  for (int64_t w = 0; w < nwords; w += 16) IL_PREFETCH(p + w);
}

// Prefetches mask `t`'s run of the segment at `words` or, past the last mask, the run of mask
// t - num_masks in the next segment (which starts nwords later: segments follow each other in
// the flat word order). Addresses past the tensor are harmless: prefetches do not fault.
IL_ALWAYS_INLINE void prefetch_mask(const uint32_t* words, int64_t mask_stride, int64_t num_masks, int64_t nwords,
                                    int64_t t) {
  prefetch_run(t < num_masks ? words + t * mask_stride : words + (t - num_masks) * mask_stride + nwords, nwords);
}

// Masks the dot-product kernels prefetch ahead: a run takes ~100 ns, about one DRAM latency.
constexpr int64_t kPrefetchMasks = 4;

// --------------------------------------------------------------------------- coefficients

// Bit j tested against a constant mask, not shifted by j: the baseline ISA (SSE2) has no
// per-lane shifts, and a shift makes the compiler fall back to branches on random bits.
alignas(64) constexpr uint32_t kBit[kWordBits] = {
    1u << 0,  1u << 1,  1u << 2,  1u << 3,  1u << 4,  1u << 5,  1u << 6,  1u << 7,  1u << 8,  1u << 9,  1u << 10,
    1u << 11, 1u << 12, 1u << 13, 1u << 14, 1u << 15, 1u << 16, 1u << 17, 1u << 18, 1u << 19, 1u << 20, 1u << 21,
    1u << 22, 1u << 23, 1u << 24, 1u << 25, 1u << 26, 1u << 27, 1u << 28, 1u << 29, 1u << 30, 1u << 31};

// coef[32 * w + j] += Σ_t alpha[t] * bit j of words[t * mask_stride + w], for w < nwords and
// t < num_masks. The caller hands these kernels at most kMaskChunk masks at a time (see
// add_coefficients), so the words they read stay in L1 across a segment.

template <class acc_t>
IL_ALWAYS_INLINE void coef_direct_body(const uint32_t* words, int64_t mask_stride, int64_t num_masks,
                                       const acc_t* alpha, int64_t nwords, acc_t* coef) {
  for (int64_t w = 0; w < nwords; ++w) {
    acc_t acc[kWordBits];
    std::copy(coef + kWordBits * w, coef + kWordBits * (w + 1), acc);
    const uint32_t* p = words + w;
    for (int64_t t = 0; t < num_masks; ++t) {
      const uint32_t bits = p[t * mask_stride];
      const acc_t a = alpha[t];
      for (int j = 0; j < kWordBits; ++j) acc[j] += (bits & kBit[j]) ? a : acc_t(0);
    }
    std::copy(acc, acc + kWordBits, coef + kWordBits * w);
  }
}

template <class acc_t>
void coef_generic(const uint32_t* words, int64_t mask_stride, int64_t num_masks, const acc_t* alpha,
                  int64_t nwords, acc_t* coef) {
  coef_direct_body<acc_t>(words, mask_stride, num_masks, alpha, nwords, coef);
}

#ifdef IL_X86
template <class acc_t>
IL_TARGET_AVX2 void coef_avx2_auto(const uint32_t* words, int64_t mask_stride, int64_t num_masks,
                                   const acc_t* alpha, int64_t nwords, acc_t* coef) {
  coef_direct_body<acc_t>(words, mask_stride, num_masks, alpha, nwords, coef);
}

// Lane i of avx2_bit_select(q) holds 1 << (8q + i): and + compare turns a broadcast word into
// eight lane masks.
IL_TARGET_AVX2 IL_ALWAYS_INLINE __m256i avx2_bit_select(int q) {
  const int b = 8 * q;
  return _mm256_setr_epi32(1 << b, 1 << (b + 1), 1 << (b + 2), 1 << (b + 3), 1 << (b + 4), 1 << (b + 5),
                           1 << (b + 6), static_cast<int>(1u << (b + 7)));
}

// Two words (64 columns) per step: eight accumulators hide the add latency.
IL_TARGET_AVX2 void coef_avx2_f32(const uint32_t* words, int64_t mask_stride, int64_t num_masks,
                                  const float* alpha, int64_t nwords, float* coef) {
  const __m256i sel[4] = {avx2_bit_select(0), avx2_bit_select(1), avx2_bit_select(2), avx2_bit_select(3)};
  int64_t w = 0;
  for (; w + 2 <= nwords; w += 2) {
    float* c = coef + kWordBits * w;
    __m256 acc[8];
    for (int i = 0; i < 8; ++i) acc[i] = _mm256_loadu_ps(c + 8 * i);
    const uint32_t* p = words + w;
    for (int64_t t = 0; t < num_masks; ++t, p += mask_stride) {
      const __m256 a = _mm256_set1_ps(alpha[t]);
      for (int i = 0; i < 2; ++i) {
        const __m256i b = _mm256_set1_epi32(static_cast<int>(p[i]));
        for (int q = 0; q < 4; ++q) {
          const __m256i on = _mm256_cmpeq_epi32(_mm256_and_si256(b, sel[q]), sel[q]);
          acc[4 * i + q] = _mm256_add_ps(acc[4 * i + q], _mm256_and_ps(_mm256_castsi256_ps(on), a));
        }
      }
    }
    for (int i = 0; i < 8; ++i) _mm256_storeu_ps(c + 8 * i, acc[i]);
  }
  if (w < nwords) coef_direct_body<float>(words + w, mask_stride, num_masks, alpha, nwords - w, coef + kWordBits * w);
}

// kBlock words (32 * kBlock columns) per step. Each 16-bit half of a word, loaded straight into
// a mask register, is the lane mask of one add.
template <int kBlock>
IL_TARGET_AVX512 IL_ALWAYS_INLINE void coef_avx512_block(const uint32_t* p, int64_t mask_stride, int64_t num_masks,
                                                         const float* alpha, float* coef) {
  __m512 acc[2 * kBlock];
  for (int i = 0; i < 2 * kBlock; ++i) acc[i] = _mm512_loadu_ps(coef + 16 * i);
  for (int64_t t = 0; t < num_masks; ++t, p += mask_stride) {
    const __m512 a = _mm512_set1_ps(alpha[t]);
    __mmask16* half = reinterpret_cast<__mmask16*>(const_cast<uint32_t*>(p));  // low half first (little-endian)
    for (int i = 0; i < 2 * kBlock; ++i) acc[i] = _mm512_mask_add_ps(acc[i], _load_mask16(half + i), acc[i], a);
  }
  for (int i = 0; i < 2 * kBlock; ++i) _mm512_storeu_ps(coef + 16 * i, acc[i]);
}

IL_TARGET_AVX512 void coef_avx512_f32(const uint32_t* words, int64_t mask_stride, int64_t num_masks,
                                      const float* alpha, int64_t nwords, float* coef) {
  int64_t w = 0;
  for (; w + 8 <= nwords; w += 8)
    coef_avx512_block<8>(words + w, mask_stride, num_masks, alpha, coef + kWordBits * w);
  for (; w < nwords; ++w) coef_avx512_block<1>(words + w, mask_stride, num_masks, alpha, coef + kWordBits * w);
}

IL_TARGET_AVX512 void coef_avx512_f64(const uint32_t* words, int64_t mask_stride, int64_t num_masks,
                                      const double* alpha, int64_t nwords, double* coef) {
  for (int64_t w = 0; w < nwords; ++w) {
    double* c = coef + kWordBits * w;
    __m512d acc[4];
    for (int q = 0; q < 4; ++q) acc[q] = _mm512_loadu_pd(c + 8 * q);
    const uint32_t* p = words + w;
    for (int64_t t = 0; t < num_masks; ++t, p += mask_stride) {
      const __m512d a = _mm512_set1_pd(alpha[t]);
      for (int q = 0; q < 4; ++q)
        acc[q] = _mm512_mask_add_pd(acc[q], static_cast<__mmask8>(*p >> (8 * q)), acc[q], a);
    }
    for (int q = 0; q < 4; ++q) _mm512_storeu_pd(c + 8 * q, acc[q]);
  }
}
#endif  // IL_X86

// --------------------------------------------------------------------------- byte tables
// Table g holds, for every byte b, Σ_p alpha[8g + kLutOrder[p]] over the set bits p of b. The
// bits of 8 masks at one column form that byte (a bit-matrix transpose of 8 words), so one
// lookup adds 8 coefficients.

#ifdef IL_X86
// The SSE2 transpose below yields the masks of a group in this order.
constexpr int kLutOrder[8] = {0, 4, 2, 6, 1, 5, 3, 7};

// idx[j] (j < 32): bit p is bit j of m[kLutOrder[p]]. Interleave the four bytes of the 8 words
// so each 8-byte half of s0/s1 holds one byte of every mask, then movemask reads one bit plane.
IL_ALWAYS_INLINE void transpose_8x32(const uint32_t m[8], uint8_t idx[32]) {
  const __m128i v0 = _mm_setr_epi32(static_cast<int>(m[0]), static_cast<int>(m[1]), static_cast<int>(m[2]),
                                    static_cast<int>(m[3]));
  const __m128i v1 = _mm_setr_epi32(static_cast<int>(m[4]), static_cast<int>(m[5]), static_cast<int>(m[6]),
                                    static_cast<int>(m[7]));
  const __m128i u0 = _mm_unpacklo_epi8(v0, v1), u1 = _mm_unpackhi_epi8(v0, v1);
  const __m128i r0 = _mm_unpacklo_epi16(u0, u1), r1 = _mm_unpackhi_epi16(u0, u1);
  __m128i s0 = _mm_unpacklo_epi32(r0, r1), s1 = _mm_unpackhi_epi32(r0, r1);
  for (int b = 7; b >= 0; --b) {
    const uint32_t lo = static_cast<uint32_t>(_mm_movemask_epi8(s0));
    const uint32_t hi = static_cast<uint32_t>(_mm_movemask_epi8(s1));
    idx[b] = static_cast<uint8_t>(lo);
    idx[8 + b] = static_cast<uint8_t>(lo >> 8);
    idx[16 + b] = static_cast<uint8_t>(hi);
    idx[24 + b] = static_cast<uint8_t>(hi >> 8);
    s0 = _mm_add_epi8(s0, s0);  // next bit plane into the sign bits
    s1 = _mm_add_epi8(s1, s1);
  }
}
#else
constexpr int kLutOrder[8] = {0, 1, 2, 3, 4, 5, 6, 7};

// 8x8 bit-matrix transpose of a 64-bit word (byte i = row i): three delta swaps.
IL_ALWAYS_INLINE uint64_t transpose_8x8(uint64_t x) {
  uint64_t t = (x ^ (x >> 7)) & 0x00AA00AA00AA00AAull;
  x ^= t ^ (t << 7);
  t = (x ^ (x >> 14)) & 0x0000CCCC0000CCCCull;
  x ^= t ^ (t << 14);
  t = (x ^ (x >> 28)) & 0x00000000F0F0F0F0ull;
  return x ^ t ^ (t << 28);
}

IL_ALWAYS_INLINE void transpose_8x32(const uint32_t m[8], uint8_t idx[32]) {
  for (int k = 0; k < 4; ++k) {
    uint64_t x = 0;
    for (int i = 0; i < 8; ++i) x |= static_cast<uint64_t>((m[i] >> (8 * k)) & 0xFFu) << (8 * i);
    x = transpose_8x8(x);
    for (int j = 0; j < 8; ++j) idx[8 * k + j] = static_cast<uint8_t>(x >> (8 * j));
  }
}
#endif

constexpr int64_t kLutSize = 256;

int64_t lut_groups(int64_t num_masks) { return (num_masks + 7) / 8; }

template <class acc_t>
void build_tables(const acc_t* alpha, int64_t num_masks, acc_t* tables) {
  for (int64_t g = 0; g < lut_groups(num_masks); ++g) {
    acc_t* tab = tables + kLutSize * g;
    tab[0] = 0;
    for (int p = 0; p < 8; ++p) {
      const int64_t t = 8 * g + kLutOrder[p];
      const acc_t a = t < num_masks ? alpha[t] : acc_t(0);
      for (int b = 0; b < (1 << p); ++b) tab[(1 << p) | b] = tab[b] + a;
    }
  }
}

// Indices of all groups first, then per column one running sum over the groups (kept in a
// register). `tables` holds the tables of these masks' groups; num_masks <= kMaskChunk.
template <class acc_t>
void coef_lut(const uint32_t* words, int64_t mask_stride, int64_t num_masks, const acc_t* tables, int64_t nwords,
              acc_t* coef) {
  const int64_t groups = lut_groups(num_masks);
  uint8_t idx[kMaskChunk / 8][kWordBits];
  for (int64_t w = 0; w < nwords; ++w) {
    for (int64_t g = 0; g < groups; ++g) {
      uint32_t m[8];
      for (int i = 0; i < 8; ++i) {
        const int64_t t = 8 * g + i;
        m[i] = t < num_masks ? words[t * mask_stride + w] : 0u;
      }
      transpose_8x32(m, idx[g]);
    }
    for (int j = 0; j < kWordBits; ++j) {
      acc_t s = coef[kWordBits * w + j];
      for (int64_t g = 0; g < groups; ++g) s += tables[kLutSize * g + idx[g][j]];
      coef[kWordBits * w + j] = s;
    }
  }
}

template <class acc_t>
using CoefFn = void (*)(const uint32_t*, int64_t, int64_t, const acc_t*, int64_t, acc_t*);

// coef = Σ_t alpha[t] * bits over a segment, kMaskChunk masks at a time: their words of the
// segment (kMaskChunk * 256 bytes) stay in L1 while the kernel walks it, and the next chunk's
// words are prefetched meanwhile. `per_mask` is alpha, or the byte tables when `lut`.
template <class acc_t>
void add_coefficients(CoefFn<acc_t> fn, bool lut, const uint32_t* words, int64_t mask_stride, int64_t num_masks,
                      const acc_t* per_mask, int64_t nwords, acc_t* coef) {
  std::fill(coef, coef + kWordBits * nwords, acc_t(0));
  for (int64_t t0 = 0; t0 < num_masks; t0 += kMaskChunk) {
    // The next kMaskChunk masks after this chunk, counting on into the next segment's.
    const int64_t n = std::min(kMaskChunk, num_masks - t0);
    const int64_t end = std::min(t0 + n + kMaskChunk, num_masks + std::min(num_masks, kMaskChunk));
    for (int64_t t = t0 + n; t < end; ++t) prefetch_mask(words, mask_stride, num_masks, nwords, t);
    fn(words + t0 * mask_stride, mask_stride, n,
       lut ? per_mask + (t0 / 8) * kLutSize : per_mask + t0, nwords, coef);
  }
}

// --------------------------------------------------------------------------- bit dot products

// partial[t] += Σ_{w < nwords} Σ_j bit j of words[t * mask_stride + w] * gw[32 * w + j]

template <class acc_t>
IL_ALWAYS_INLINE void dot_bits_body(const uint32_t* words, int64_t mask_stride, int64_t num_masks, const acc_t* gw,
                                    int64_t nwords, double* partial) {
  for (int64_t t = 0; t < num_masks; ++t) {
    const uint32_t* p = words + t * mask_stride;
    prefetch_mask(words, mask_stride, num_masks, nwords, t + kPrefetchMasks);
    acc_t acc[kWordBits] = {};
    for (int64_t w = 0; w < nwords; ++w) {
      const uint32_t bits = p[w];
      const acc_t* g = gw + kWordBits * w;
      for (int j = 0; j < kWordBits; ++j) {
        const acc_t gj = g[j];  // loaded unconditionally, so the select vectorises
        acc[j] += (bits & kBit[j]) ? gj : acc_t(0);
      }
    }
    acc_t s = 0;
    for (int j = 0; j < kWordBits; ++j) s += acc[j];
    partial[t] += static_cast<double>(s);
  }
}

template <class acc_t>
void dot_bits_generic(const uint32_t* words, int64_t mask_stride, int64_t num_masks, const acc_t* gw, int64_t nwords,
                      double* partial) {
  dot_bits_body<acc_t>(words, mask_stride, num_masks, gw, nwords, partial);
}

#ifdef IL_X86
template <class acc_t>
IL_TARGET_AVX2 void dot_bits_avx2_auto(const uint32_t* words, int64_t mask_stride, int64_t num_masks, const acc_t* gw,
                                       int64_t nwords, double* partial) {
  dot_bits_body<acc_t>(words, mask_stride, num_masks, gw, nwords, partial);
}

IL_TARGET_AVX2 void dot_bits_avx2_f32(const uint32_t* words, int64_t mask_stride, int64_t num_masks, const float* gw,
                                      int64_t nwords, double* partial) {
  const __m256i sel[4] = {avx2_bit_select(0), avx2_bit_select(1), avx2_bit_select(2), avx2_bit_select(3)};
  for (int64_t t = 0; t < num_masks; ++t) {
    const uint32_t* p = words + t * mask_stride;
    prefetch_mask(words, mask_stride, num_masks, nwords, t + kPrefetchMasks);
    __m256 acc[4];
    for (auto& v : acc) v = _mm256_setzero_ps();
    for (int64_t w = 0; w < nwords; ++w) {
      const __m256i b = _mm256_set1_epi32(static_cast<int>(p[w]));
      for (int q = 0; q < 4; ++q) {
        const __m256i on = _mm256_cmpeq_epi32(_mm256_and_si256(b, sel[q]), sel[q]);
        const __m256 g = _mm256_loadu_ps(gw + kWordBits * w + 8 * q);
        acc[q] = _mm256_add_ps(acc[q], _mm256_and_ps(_mm256_castsi256_ps(on), g));
      }
    }
    const __m256 s8 = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
    s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    s4 = _mm_add_ss(s4, _mm_shuffle_ps(s4, s4, 1));
    partial[t] += static_cast<double>(_mm_cvtss_f32(s4));
  }
}

IL_TARGET_AVX512 void dot_bits_avx512_f32(const uint32_t* words, int64_t mask_stride, int64_t num_masks,
                                          const float* gw, int64_t nwords, double* partial) {
  for (int64_t t = 0; t < num_masks; ++t) {
    const uint32_t* p = words + t * mask_stride;
    prefetch_mask(words, mask_stride, num_masks, nwords, t + kPrefetchMasks);
    __m512 acc[4];
    for (auto& v : acc) v = _mm512_setzero_ps();
    int64_t w = 0;
    for (; w + 2 <= nwords; w += 2) {  // two words per step: four independent add chains
      for (int i = 0; i < 2; ++i) {
        const uint32_t b = p[w + i];
        const float* g = gw + kWordBits * (w + i);
        acc[2 * i] = _mm512_mask_add_ps(acc[2 * i], static_cast<__mmask16>(b), acc[2 * i], _mm512_loadu_ps(g));
        acc[2 * i + 1] =
            _mm512_mask_add_ps(acc[2 * i + 1], static_cast<__mmask16>(b >> 16), acc[2 * i + 1], _mm512_loadu_ps(g + 16));
      }
    }
    for (; w < nwords; ++w) {
      const uint32_t b = p[w];
      const float* g = gw + kWordBits * w;
      acc[0] = _mm512_mask_add_ps(acc[0], static_cast<__mmask16>(b), acc[0], _mm512_loadu_ps(g));
      acc[1] = _mm512_mask_add_ps(acc[1], static_cast<__mmask16>(b >> 16), acc[1], _mm512_loadu_ps(g + 16));
    }
    const __m512 s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    partial[t] += static_cast<double>(_mm512_reduce_add_ps(s));
  }
}

IL_TARGET_AVX512 void dot_bits_avx512_f64(const uint32_t* words, int64_t mask_stride, int64_t num_masks,
                                          const double* gw, int64_t nwords, double* partial) {
  for (int64_t t = 0; t < num_masks; ++t) {
    const uint32_t* p = words + t * mask_stride;
    prefetch_mask(words, mask_stride, num_masks, nwords, t + kPrefetchMasks);
    __m512d acc[4];
    for (auto& v : acc) v = _mm512_setzero_pd();
    for (int64_t w = 0; w < nwords; ++w) {
      const uint32_t b = p[w];
      for (int q = 0; q < 4; ++q)
        acc[q] = _mm512_mask_add_pd(acc[q], static_cast<__mmask8>(b >> (8 * q)), acc[q],
                                    _mm512_loadu_pd(gw + kWordBits * w + 8 * q));
    }
    const __m512d s = _mm512_add_pd(_mm512_add_pd(acc[0], acc[1]), _mm512_add_pd(acc[2], acc[3]));
    partial[t] += _mm512_reduce_add_pd(s);
  }
}
#endif  // IL_X86

template <class acc_t>
using DotFn = void (*)(const uint32_t*, int64_t, int64_t, const acc_t*, int64_t, double*);

// The coefficient and dot-product kernels of a variant ("lut" picks its tables elsewhere).
template <class acc_t>
struct Kernels {
  CoefFn<acc_t> coef;
  DotFn<acc_t> dot;
};

template <class acc_t>
Kernels<acc_t> kernels(Variant v);

template <>
Kernels<float> kernels<float>(Variant v) {
#ifdef IL_X86
  if (v == Variant::avx512) return {coef_avx512_f32, dot_bits_avx512_f32};
  if (v == Variant::avx2) return {coef_avx2_f32, dot_bits_avx2_f32};
#endif
  return {coef_generic<float>, dot_bits_generic<float>};
}

template <>
Kernels<double> kernels<double>(Variant v) {
#ifdef IL_X86
  if (v == Variant::avx512) return {coef_avx512_f64, dot_bits_avx512_f64};
  if (v == Variant::avx2) return {coef_avx2_auto<double>, dot_bits_avx2_auto<double>};
#endif
  return {coef_generic<double>, dot_bits_generic<double>};
}

// --------------------------------------------------------------------------- shapes and checks

struct Layout {
  int64_t num_masks, rows, cols, nwords;
};

Layout check_combine(const char* op, const Tensor& weight, const Tensor& words, const Tensor& alpha) {
  IL_CHECK(weight.is_cpu() && words.is_cpu() && alpha.is_cpu(), op, ": the native ops take CPU tensors");
  IL_CHECK(is_floating(weight.scalar_type()), op, ": weight must be floating point, got ",
           torch::headeronly::toString(weight.scalar_type()));
  IL_CHECK(is_floating(alpha.scalar_type()), op, ": alpha must be floating point, got ",
           torch::headeronly::toString(alpha.scalar_type()));
  IL_CHECK(words.scalar_type() == ScalarType::Int, op, ": packed words must be int32, got ",
           torch::headeronly::toString(words.scalar_type()));
  IL_CHECK(weight.dim() >= 1, op, ": weight must have at least one dimension");
  Layout l;
  l.rows = weight.size(0);
  l.cols = 1;  // the product of the other sizes (not numel / rows: that is 0 for zero rows)
  for (int64_t d = 1; d < weight.dim(); ++d) l.cols *= weight.size(d);
  l.nwords = (l.cols + kWordBits - 1) / kWordBits;
  IL_CHECK(words.dim() == 3 && words.size(1) == l.rows && words.size(2) == l.nwords, op, ": packed words of shape ",
           shape_of(words), " do not fit a weight of shape ", shape_of(weight), " (expected [T, ", l.rows, ", ",
           l.nwords, "])");
  l.num_masks = words.size(0);
  // (impresslearn.ops refuses T = 0 for every backend; the kernels' work sizes divide by T)
  IL_CHECK(l.num_masks >= 1, op, ": packed words of shape ", shape_of(words), " hold no masks");
  const bool per_layer = alpha.dim() == 1 && alpha.size(0) == l.num_masks;
  const bool per_channel = alpha.dim() == 2 && alpha.size(0) == l.num_masks && alpha.size(1) == l.rows;
  IL_CHECK(per_layer || per_channel, op, ": alpha must have shape [", l.num_masks, "] or [", l.num_masks, ", ",
           l.rows, "], got ", shape_of(alpha));
  return l;
}

// alpha in the accumulation dtype, laid out [rows, T] when per channel so each row reads it contiguously.
Tensor alpha_rows(const Tensor& alpha, ScalarType acc) {
  const Tensor a = to_dtype(alpha, acc);
  return torch::stable::contiguous(alpha.dim() == 2 ? torch::stable::transpose(a, 0, 1) : a);
}

const uint32_t* bit_words(const Tensor& words) { return data_of<uint32_t>(words); }

// Calls fn(s0, s1) for segments of at most kSegWords flat words (r * nwords + w) covering
// [begin, end). A mask's words of a segment are contiguous even across rows, so with per-layer
// alpha a segment may span rows (short rows then make long runs); per-channel alpha changes at
// each row, so then (split_rows) a segment stays within one.
template <class F>
void for_segments(int64_t nwords, bool split_rows, int64_t begin, int64_t end, const F& fn) {
  while (begin < end) {
    int64_t stop = std::min(end, begin + kSegWords);
    if (split_rows) stop = std::min(stop, (begin / nwords + 1) * nwords);
    fn(begin, stop);
    begin = stop;
  }
}

// Calls fn(r, w0, w1, offset) for the pieces of rows in flat words [s0, s1); `offset` is the
// number of the segment's words before the piece.
template <class F>
void for_rows(int64_t nwords, int64_t s0, int64_t s1, const F& fn) {
  for (int64_t s = s0; s < s1;) {
    const int64_t r = s / nwords, w0 = s % nwords, w1 = std::min(nwords, w0 + (s1 - s));
    fn(r, w0, w1, s - s0);
    s += w1 - w0;
  }
}

// --------------------------------------------------------------------------- combine

template <class scalar_t, class acc_t>
void combine_rows(const Layout& l, const scalar_t* weight, const uint32_t* words, const acc_t* alpha, bool per_channel,
                  scalar_t* out) {
  const int64_t T = l.num_masks, mask_stride = l.rows * l.nwords;
  const bool lut = combine_uses_lut(T);
  const CoefFn<acc_t> coef_fn = lut ? coef_lut<acc_t> : kernels<acc_t>(variant()).coef;
  std::vector<acc_t> layer_tables;
  if (lut && !per_channel) {
    layer_tables.resize(static_cast<size_t>(lut_groups(T) * kLutSize));
    build_tables(alpha, T, layer_tables.data());
  }
  const int64_t grain = std::max<int64_t>(1, kGrainBits / (kWordBits * T));
  parallel_for(0, l.rows * l.nwords, grain, [&](int64_t begin, int64_t end) {
    acc_t coef[kSegWords * kWordBits];
    std::vector<acc_t> row_tables;
    int64_t tables_row = -1;
    for_segments(l.nwords, per_channel, begin, end, [&](int64_t s0, int64_t s1) {
      const int64_t r = s0 / l.nwords;  // the row of a per-channel segment
      const acc_t* per_mask = per_channel ? alpha + r * T : alpha;
      if (lut && per_channel) {
        if (tables_row != r) {
          row_tables.resize(static_cast<size_t>(lut_groups(T) * kLutSize));
          build_tables(per_mask, T, row_tables.data());
          tables_row = r;
        }
        per_mask = row_tables.data();
      } else if (lut) {
        per_mask = layer_tables.data();
      }
      add_coefficients<acc_t>(coef_fn, lut, words + s0, mask_stride, T, per_mask, s1 - s0, coef);
      for_rows(l.nwords, s0, s1, [&](int64_t row, int64_t w0, int64_t w1, int64_t offset) {
        const int64_t c0 = kWordBits * w0, c1 = std::min(l.cols, kWordBits * w1);
        const scalar_t* wr = weight + row * l.cols;
        scalar_t* orow = out + row * l.cols;
        const acc_t* cf = coef + kWordBits * offset;
        for (int64_t c = c0; c < c1; ++c) orow[c] = static_cast<scalar_t>(static_cast<acc_t>(wr[c]) * cf[c - c0]);
      });
    });
  });
}

// fp64 weights or alpha accumulate in fp64, everything else in fp32 (as the reference does).
ScalarType acc_type(ScalarType t) { return t == ScalarType::Double ? ScalarType::Double : ScalarType::Float; }

// --------------------------------------------------------------------------- grad of alpha

// grad * weight over the segment's words, zero past each row's last column.
template <class scalar_t, class acc_t>
void grad_times_weight(const Layout& l, const scalar_t* grad, const scalar_t* weight, int64_t s0, int64_t s1,
                       acc_t* gw) {
  for_rows(l.nwords, s0, s1, [&](int64_t row, int64_t w0, int64_t w1, int64_t offset) {
    const int64_t c0 = kWordBits * w0, c1 = std::min(l.cols, kWordBits * w1);
    const scalar_t* gr = grad + row * l.cols;
    const scalar_t* wr = weight + row * l.cols;
    acc_t* g = gw + kWordBits * offset;
    for (int64_t c = c0; c < c1; ++c) g[c - c0] = static_cast<acc_t>(gr[c]) * static_cast<acc_t>(wr[c]);
    std::fill(g + (c1 - c0), g + kWordBits * (w1 - w0), acc_t(0));  // padding (its bits are 0 anyway)
  });
}

// Deterministic: per-channel alpha sums each row in one thread; per-layer alpha sums fixed blocks
// of the flat word range (their size depends on the shape only) into one fp64 partial per mask
// and block, added in block order. Neither depends on the number of threads.
template <class scalar_t, class acc_t>
void grad_alpha_rows(const Layout& l, const scalar_t* grad, const scalar_t* weight, const uint32_t* words,
                     bool per_channel, double* out /* [T] or [rows, T] */) {
  const int64_t T = l.num_masks, mask_stride = l.rows * l.nwords, total = l.rows * l.nwords;
  const DotFn<acc_t> dot_fn = kernels<acc_t>(variant()).dot;
  const auto sum_range = [&](int64_t begin, int64_t end, double* acc) {
    acc_t gw[kSegWords * kWordBits];
    for_segments(l.nwords, per_channel, begin, end, [&](int64_t s0, int64_t s1) {
      grad_times_weight(l, grad, weight, s0, s1, gw);
      dot_fn(words + s0, mask_stride, T, gw, s1 - s0, acc);
    });
  };
  if (per_channel) {
    const int64_t grain = std::max<int64_t>(1, kGrainBits / (kWordBits * T * l.nwords));
    parallel_for(0, l.rows, grain, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) sum_range(r * l.nwords, (r + 1) * l.nwords, out + r * T);
    });
    return;
  }
  const int64_t block = std::max<int64_t>(kSegWords, kGrainBits / (kWordBits * T));
  const int64_t blocks = (total + block - 1) / block;
  std::vector<double> partial(static_cast<size_t>(blocks * T), 0.0);
  parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) sum_range(b * block, std::min(total, (b + 1) * block), partial.data() + b * T);
  });
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t t = 0; t < T; ++t) out[t] += partial[static_cast<size_t>(b * T + t)];
}

}  // namespace

Tensor combine(const Tensor& weight_in, const Tensor& words_in, const Tensor& alpha_in) {
  const Layout l = check_combine("combine", weight_in, words_in, alpha_in);
  const Tensor weight = torch::stable::contiguous(weight_in), words = torch::stable::contiguous(words_in);
  Tensor out = empty_like_cpu(weight);
  if (weight.numel() == 0) return out;
  const bool per_channel = alpha_in.dim() == 2;
  const ScalarType acc = acc_type(weight.scalar_type());
  const Tensor alpha = alpha_rows(alpha_in, acc);
  dispatch_floating(weight.scalar_type(), "combine: weight must be floating point", [&](auto tag) {
    using scalar_t = decltype(tag);
    if (acc == ScalarType::Double) {
      combine_rows<scalar_t, double>(l, data_of<scalar_t>(weight), bit_words(words), data_of<double>(alpha),
                                     per_channel, mutable_data_of<scalar_t>(out));
    } else {
      combine_rows<scalar_t, float>(l, data_of<scalar_t>(weight), bit_words(words), data_of<float>(alpha),
                                    per_channel, mutable_data_of<scalar_t>(out));
    }
  });
  return out;
}

Tensor combine_grad_alpha(const Tensor& grad_in, const Tensor& weight_in, const Tensor& words_in,
                          const Tensor& alpha) {
  const Layout l = check_combine("combine_grad_alpha", weight_in, words_in, alpha);
  IL_CHECK(sizes_of(grad_in) == sizes_of(weight_in), "combine_grad_alpha: grad of shape ", shape_of(grad_in),
           " does not match weight ", shape_of(weight_in));
  IL_CHECK(grad_in.is_cpu() && is_floating(grad_in.scalar_type()),
           "combine_grad_alpha: grad must be a floating-point CPU tensor");
  // grad and weight in one dtype; fp64 anywhere means fp64 accumulation (as the reference does).
  const ScalarType common = promote_floating(grad_in.scalar_type(), weight_in.scalar_type());
  const Tensor grad = torch::stable::contiguous(to_dtype(grad_in, common));
  const Tensor weight = torch::stable::contiguous(to_dtype(weight_in, common));
  const Tensor words = torch::stable::contiguous(words_in);
  const ScalarType acc = acc_type(promote_floating(common, alpha.scalar_type()));
  const bool per_channel = alpha.dim() == 2;
  Tensor sums = per_channel ? zeros_cpu({l.rows, l.num_masks}, ScalarType::Double)
                            : zeros_cpu({l.num_masks}, ScalarType::Double);
  if (weight.numel() > 0) {
    dispatch_floating(common, "combine_grad_alpha: grad must be floating point", [&](auto tag) {
      using scalar_t = decltype(tag);
      if (acc == ScalarType::Double) {
        grad_alpha_rows<scalar_t, double>(l, data_of<scalar_t>(grad), data_of<scalar_t>(weight), bit_words(words),
                                          per_channel, mutable_data_of<double>(sums));
      } else {
        grad_alpha_rows<scalar_t, float>(l, data_of<scalar_t>(grad), data_of<scalar_t>(weight), bit_words(words),
                                         per_channel, mutable_data_of<double>(sums));
      }
    });
  }
  const Tensor ordered = per_channel ? torch::stable::transpose(sums, 0, 1) : sums;
  return torch::stable::contiguous(to_dtype(ordered, alpha.scalar_type()));
}

}  // namespace impresslearn_native
