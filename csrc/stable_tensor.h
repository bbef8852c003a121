// What the kernels take from torch, through its stable ABI only (torch/csrc/stable and
// torch/headeronly): the tensor type, CPU allocation, checks that raise a plain sentence, and
// dispatch on dtype. Built with TORCH_TARGET_VERSION (setup.py), so the library loads on every
// torch at or above that version, whichever torch compiled it.
#pragma once

#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/BFloat16.h>
#include <torch/headeronly/util/Half.h>

#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace impresslearn_native {

using Tensor = torch::stable::Tensor;
using torch::headeronly::ScalarType;
using Half = torch::headeronly::Half;
using BFloat16 = torch::headeronly::BFloat16;

// A failed check reaches Python as a RuntimeError with exactly this text: STD_TORCH_CHECK would
// prefix the C++ function, file and line, which say nothing to a user.
template <class... Args>
[[noreturn]] void fail(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  throw std::runtime_error(out.str());
}

#define IL_CHECK(cond, ...)                                   \
  do {                                                        \
    if (!(cond)) ::impresslearn_native::fail(__VA_ARGS__);    \
  } while (0)

// "[3, 4, 5]", as torch prints a shape.
inline std::string shape_of(const Tensor& t) {
  std::ostringstream out;
  out << "[";
  for (int64_t d = 0; d < t.dim(); ++d) out << (d ? ", " : "") << t.size(d);
  out << "]";
  return out.str();
}

inline bool is_floating(ScalarType t) {
  return t == ScalarType::Float || t == ScalarType::Double || t == ScalarType::Half || t == ScalarType::BFloat16;
}

inline bool is_real(ScalarType t) {
  return is_floating(t) || t == ScalarType::Bool || t == ScalarType::Byte || t == ScalarType::Char ||
         t == ScalarType::Short || t == ScalarType::Int || t == ScalarType::Long;
}

// torch's type promotion, restricted to the four floating dtypes the ops take.
inline ScalarType promote_floating(ScalarType a, ScalarType b) {
  if (a == b) return a;
  if (a == ScalarType::Double || b == ScalarType::Double) return ScalarType::Double;
  return ScalarType::Float;  // fp32 with a half type, or fp16 with bf16
}

inline Tensor empty_cpu(const std::vector<int64_t>& sizes, ScalarType dtype) {
  return torch::stable::empty(sizes, dtype, torch::headeronly::Layout::Strided,
                              torch::stable::Device(torch::headeronly::DeviceType::CPU));
}

inline Tensor zeros_cpu(const std::vector<int64_t>& sizes, ScalarType dtype) {
  Tensor t = empty_cpu(sizes, dtype);
  torch::stable::zero_(t);
  return t;
}

inline std::vector<int64_t> sizes_of(const Tensor& t) {
  std::vector<int64_t> out(static_cast<size_t>(t.dim()));
  for (int64_t d = 0; d < t.dim(); ++d) out[static_cast<size_t>(d)] = t.size(d);
  return out;
}

// Same shape and dtype as `t`, contiguous, on the CPU.
inline Tensor empty_like_cpu(const Tensor& t) { return empty_cpu(sizes_of(t), t.scalar_type()); }

inline Tensor to_dtype(const Tensor& t, ScalarType dtype) {
  return t.scalar_type() == dtype ? t : torch::stable::to(t, dtype);
}

template <class T>
const T* data_of(const Tensor& t) {
  return static_cast<const T*>(t.const_data_ptr());
}

template <class T>
T* mutable_data_of(const Tensor& t) {
  return static_cast<T*>(t.mutable_data_ptr());
}

// f(scalar_t{}) for fp32, fp64, fp16 and bf16; any other dtype fails with `what`.
template <class F>
void dispatch_floating(ScalarType t, const char* what, const F& f) {
  switch (t) {
    case ScalarType::Float: return f(float{});
    case ScalarType::Double: return f(double{});
    case ScalarType::Half: return f(Half{});
    case ScalarType::BFloat16: return f(BFloat16{});
    default: fail(what, ", got ", torch::headeronly::toString(t));
  }
}

// The floating dtypes and every integer dtype; bool is read as its byte (0 or 1).
template <class F>
void dispatch_real(ScalarType t, const char* what, const F& f) {
  switch (t) {
    case ScalarType::Bool:
    case ScalarType::Byte: return f(uint8_t{});
    case ScalarType::Char: return f(int8_t{});
    case ScalarType::Short: return f(int16_t{});
    case ScalarType::Int: return f(int32_t{});
    case ScalarType::Long: return f(int64_t{});
    default: return dispatch_floating(t, what, f);
  }
}

inline int64_t num_threads() { return static_cast<int64_t>(torch::stable::get_num_threads()); }

// torch's intra-op thread pool (at::parallel_for behind the stable ABI): torch.set_num_threads
// governs it, and the library needs no OpenMP of its own.
template <class F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
  if (begin >= end) return;
  torch::stable::parallel_for(begin, end, grain, f);
}

}  // namespace impresslearn_native
