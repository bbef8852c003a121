// Schemas of the native ops (namespace impresslearn_native; the Python ops own "impresslearn")
// and their CPU kernels. Fake (meta) implementations live in impresslearn/native.py, which
// set_python_module names so torch imports it when a fake is needed.
#include "native.h"
#include "variant.h"

#include <torch/library.h>

TORCH_LIBRARY(impresslearn_native, m) {
  m.set_python_module("impresslearn.native");
  m.def("combine(Tensor weight, Tensor words, Tensor alpha) -> Tensor");
  m.def("combine_grad_alpha(Tensor grad, Tensor weight, Tensor words, Tensor alpha) -> Tensor");
  m.def("popup_mask(Tensor scores, int k) -> Tensor");
  m.def("popup_pack(Tensor scores, int k) -> Tensor");
  m.def("threshold_mask(Tensor scores) -> Tensor");
  m.def("pack_bits(Tensor bits) -> Tensor");
  m.def("unpack_bits(Tensor words, int cols) -> Tensor");
  // Not tensor ops: which inner-loop variant runs (variant.h), for tests and benchmarks.
  m.def("variant() -> str", &impresslearn_native::variant_name);
  m.def("set_variant(str name) -> str", &impresslearn_native::set_variant);
}

TORCH_LIBRARY_IMPL(impresslearn_native, CPU, m) {
  m.impl("combine", &impresslearn_native::combine);
  m.impl("combine_grad_alpha", &impresslearn_native::combine_grad_alpha);
  m.impl("popup_mask", &impresslearn_native::popup_mask);
  m.impl("popup_pack", &impresslearn_native::popup_pack);
  m.impl("threshold_mask", &impresslearn_native::threshold_mask);
  m.impl("pack_bits", &impresslearn_native::pack_bits);
  m.impl("unpack_bits", &impresslearn_native::unpack_bits);
}
