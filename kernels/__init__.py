"""Triton kernels (installed as `impresslearn.kernels`): the "triton" backend.

Primitives with the names and signatures `impresslearn.primitives` declares, registered in `KERNELS`:

    combine, combine_grad_alpha                 kernels/combine.py
    impress_linear, impress_linear_grad_input   kernels/impress_linear.py
    popup_mask, popup_pack                      kernels/popup.py
    every_task_linear, task_row_linear          kernels/task_linear.py

`popup_weight` is composed from `popup_mask`; `threshold_mask` and the other elementwise
primitives are declared portable (one elementwise pass gains nothing from a kernel): the
reference's code runs on the GPU. Runs on CUDA tensors, or on CPU tensors when
`TRITON_INTERPRET=1` was set before the kernels were defined (how the tests run without a GPU).
Reported unavailable when Triton is missing or when there is neither a CUDA device nor the
interpreter.
"""

try:
    import triton  # noqa: F401
except Exception as err:  # missing, or broken for this platform
    UNAVAILABLE = f"triton cannot be imported: {type(err).__name__}: {err}"
else:
    import torch

    from .runtime import INTERPRETED, supports

    if not INTERPRETED and not torch.cuda.is_available():
        UNAVAILABLE = "no CUDA device (set TRITON_INTERPRET=1 before importing triton to interpret the kernels on the CPU)"
    else:
        from .combine import combine, combine_grad_alpha
        from .impress_linear import impress_linear, impress_linear_grad_input
        from .popup import popup_mask, popup_pack
        from .task_linear import every_task_linear, task_row_linear

        # The primitives with a Triton kernel (docs/design.md §5.1); popup_weight is composed from
        # popup_mask, the elementwise ones are portable: the reference's code runs on the GPU.
        KERNELS = {
            "combine": combine,
            "combine_grad_alpha": combine_grad_alpha,
            "impress_linear": impress_linear,
            "impress_linear_grad_input": impress_linear_grad_input,
            "popup_mask": popup_mask,
            "popup_pack": popup_pack,
            "every_task_linear": every_task_linear,
            "task_row_linear": task_row_linear,
        }
