// Schemas of the native ops (namespace impresslearn_native; the Python ops own "impresslearn")
// and their CPU kernels, registered through torch's stable ABI. Fake (meta) implementations live
// in impresslearn/native.py, which registers them when it loads this library.
#include "native.h"
#include "variant.h"

STABLE_TORCH_LIBRARY(impresslearn_native, m) {
  m.def("combine(Tensor weight, Tensor words, Tensor alpha) -> Tensor");
  m.def("combine_grad_alpha(Tensor grad, Tensor weight, Tensor words, Tensor alpha) -> Tensor");
  m.def("masked_weight(Tensor weight, Tensor words) -> Tensor");
  m.def("popup_mask(Tensor scores, int k) -> Tensor");
  m.def("popup_pack(Tensor scores, int k) -> Tensor");
  m.def("threshold_mask(Tensor scores) -> Tensor");
  m.def("popup_weight(Tensor weight, Tensor scores, int k) -> Tensor");
  m.def("popup_weight_grad_scores(Tensor grad, Tensor weight, Tensor scores) -> Tensor");
  m.def("threshold_weight(Tensor weight, Tensor scores) -> Tensor");
  m.def("pack_bits(Tensor bits) -> Tensor");
  m.def("unpack_bits(Tensor words, int cols) -> Tensor");
  // Not tensor ops: which inner-loop variant runs (variant.h), for tests and benchmarks.
  m.def("variant() -> str");
  m.def("set_variant(str name) -> str");
}

STABLE_TORCH_LIBRARY_IMPL(impresslearn_native, CPU, m) {
  m.impl("combine", TORCH_BOX(&impresslearn_native::combine));
  m.impl("combine_grad_alpha", TORCH_BOX(&impresslearn_native::combine_grad_alpha));
  m.impl("masked_weight", TORCH_BOX(&impresslearn_native::masked_weight));
  m.impl("popup_mask", TORCH_BOX(&impresslearn_native::popup_mask));
  m.impl("popup_pack", TORCH_BOX(&impresslearn_native::popup_pack));
  m.impl("threshold_mask", TORCH_BOX(&impresslearn_native::threshold_mask));
  m.impl("popup_weight", TORCH_BOX(&impresslearn_native::popup_weight));
  m.impl("popup_weight_grad_scores", TORCH_BOX(&impresslearn_native::popup_weight_grad_scores));
  m.impl("threshold_weight", TORCH_BOX(&impresslearn_native::threshold_weight));
  m.impl("pack_bits", TORCH_BOX(&impresslearn_native::pack_bits));
  m.impl("unpack_bits", TORCH_BOX(&impresslearn_native::unpack_bits));
}

// Ops without tensor arguments have no device to dispatch on: one kernel for every key.
STABLE_TORCH_LIBRARY_IMPL(impresslearn_native, CompositeExplicitAutograd, m) {
  m.impl("variant", TORCH_BOX(&impresslearn_native::variant_name));
  m.impl("set_variant", TORCH_BOX(&impresslearn_native::set_variant));
}
