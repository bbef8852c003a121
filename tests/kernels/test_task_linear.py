"""every_task_linear (x under every task's weight) and task_row_linear (row i under task[i]'s)
on every backend, against float64 oracles built from the original bool masks: the reference,
the native composition (one task's weight at a time from the native combine, then a GEMM) and
Triton's kernel over rows grouped by task (interpreted on CPU tensors without CUDA, on small
cases). Odd shapes, mask counts from 1 to 33, each float dtype, tasks as alphas per layer, per
output channel, or one mask each; then autograd (gradcheck on the reference in float64, the
same gradients on every backend) and what the ops refuse."""

import pytest
import torch
from cases import DEVICE, backend_grid, case_id, coefficients_oracle, only, packed_inputs

import impresslearn
from impresslearn import ops, pack_masks

KINDS = ["masks", "per_layer", "per_channel"]
# (rows, cols, masks, tasks): odd sizes around the 32-wide word and block boundaries
LAYERS = [(13, 95, 9, 4), (70, 33, 8, 3), (5, 70, 33, 2), (7, 33, 1, 5), (33, 65, 7, 7)]
TRITON_LAYERS = [(13, 95, 9, 4), (7, 33, 1, 5), (33, 40, 3, 3)]
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


def task_inputs(device, rows, cols, t, tasks, kind, dtype=torch.float32, seed=0):
    """(weight, bool masks, words, alphas or None, tasks): with kind "masks" a task is one mask (S = T)."""
    weight, masks, words, _ = packed_inputs((rows, cols), t, dtype=dtype, seed=seed, device=device)
    g = torch.Generator().manual_seed(seed + 1)
    if kind == "masks":
        return weight, masks, words, None, t
    shape = (tasks, t) if kind == "per_layer" else (tasks, t, rows)
    alphas = (torch.rand(shape, generator=g) * 2 - 1).to(dtype).to(device)
    return weight, masks, words, alphas, tasks


def task_weights_oracle(weight, masks, alphas, tasks):
    """[S, rows, cols] in float64: each task's exact effective weight."""
    w = weight.cpu().double()
    if alphas is None:
        return torch.stack([w * masks[s].double() for s in range(tasks)])
    return torch.stack([w * coefficients_oracle(masks, alphas[s].cpu()) for s in range(tasks)])


def assert_within_rounding(out, x, w_exact, dtype):
    """|out - x @ W_exact^T| within the error bound of a length-K dot product whose operands are
    rounded to `dtype` (W_eff rounded once, as combine does): (K + 2) eps |x| @ |W_exact|^T."""
    x = x.cpu().double()
    exact = x @ w_exact.transpose(-1, -2)
    bound = (x.shape[-1] + 2) * torch.finfo(dtype).eps * (x.abs() @ w_exact.abs().transpose(-1, -2))
    err = (out.cpu().double() - exact).abs()
    assert (err <= bound + 1e-300).all(), f"error {err.max().item():.3g} beyond the rounding bound"


def ids(rows, cols, t, tasks, batch):
    return f"{rows}x{cols}-T{t}-S{tasks}-batch{batch}"


CASES = [(*layer, batch) for layer in LAYERS for batch in (1, 6, 67)]
TRITON_CASES = [(*layer, batch) for layer in TRITON_LAYERS for batch in (1, 6)]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("flavour, rows, cols, t, tasks, batch", backend_grid(CASES, TRITON_CASES, ids=ids))
def test_every_task_linear_matches_oracle(flavour, rows, cols, t, tasks, batch, kind):
    weight, masks, words, alphas, tasks = task_inputs(flavour.device, rows, cols, t, tasks, kind, seed=rows + t)
    x = torch.randn(batch, cols, generator=torch.Generator().manual_seed(batch)).to(flavour.device)
    out = flavour("every_task_linear", x, weight, words, alphas)
    assert out.shape == (tasks, batch, rows) and out.dtype == x.dtype
    w_exact = task_weights_oracle(weight, masks, alphas, tasks)
    assert_within_rounding(out, x, w_exact, torch.float32)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("flavour, rows, cols, t, tasks, batch", backend_grid(CASES, TRITON_CASES, ids=ids))
def test_task_row_linear_matches_oracle(flavour, rows, cols, t, tasks, batch, kind):
    """Rows in any order, some tasks with no row at all."""
    weight, masks, words, alphas, tasks = task_inputs(flavour.device, rows, cols, t, tasks, kind, seed=rows + t)
    g = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, cols, generator=g).to(flavour.device)
    task = torch.randint(0, max(1, tasks - 1), (batch,), generator=g).to(flavour.device)  # the last task unused
    out = flavour("task_row_linear", x, weight, words, alphas, task)
    assert out.shape == (batch, rows) and out.dtype == x.dtype
    w_exact = task_weights_oracle(weight, masks, alphas, tasks)[task.cpu()]  # [batch, rows, cols]
    assert_within_rounding(out.unsqueeze(1), x.unsqueeze(1), w_exact, torch.float32)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("flavour, dtype", backend_grid([(d,) for d in DTYPES], ids=case_id))
def test_each_dtype(flavour, dtype, kind):
    weight, masks, words, alphas, tasks = task_inputs(flavour.device, 13, 45, 7, 3, kind, dtype=dtype)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(5, 45, generator=g).to(dtype).to(flavour.device)
    task = torch.tensor([2, 0, 2, 1, 0]).remainder(tasks).to(flavour.device)
    w_exact = task_weights_oracle(weight, masks, alphas, tasks)
    out = flavour("every_task_linear", x, weight, words, alphas)
    assert out.dtype == dtype
    assert_within_rounding(out, x, w_exact, dtype)
    rows = flavour("task_row_linear", x, weight, words, alphas, task)
    assert rows.dtype == dtype
    assert_within_rounding(rows.unsqueeze(1), x.unsqueeze(1), w_exact[task.cpu()], dtype)


@pytest.mark.parametrize("flavour", backend_grid(ids=None))
def test_empty_batch(flavour):
    weight, _, words, alphas, tasks = task_inputs(flavour.device, 7, 33, 3, 2, "per_layer")
    x = torch.empty(0, 33, device=flavour.device)
    assert flavour("every_task_linear", x, weight, words, alphas).shape == (2, 0, 7)
    assert flavour("task_row_linear", x, weight, words, alphas, torch.empty(0, dtype=torch.long, device=x.device)).shape == (0, 7)


@only("triton")
def test_triton_several_row_blocks_per_task():
    """More rows of one task than one BLOCK_M of the kernel, tasks of very different sizes."""
    from cases import Flavour

    triton = Flavour("triton")
    weight, masks, words, alphas, tasks = task_inputs(DEVICE, 9, 40, 5, 3, "per_channel")
    task = torch.cat([torch.zeros(70, dtype=torch.long), torch.full((3,), 2)])[torch.randperm(73)].to(DEVICE)
    x = torch.randn(73, 40).to(DEVICE)
    out = triton("task_row_linear", x, weight, words, alphas, task)
    w_exact = task_weights_oracle(weight, masks, alphas, tasks)[task.cpu()]
    assert_within_rounding(out.unsqueeze(1), x.unsqueeze(1), w_exact, torch.float32)


# --------------------------------------------------------------------------- the ops: autograd, batches of any shape


def f64_inputs(kind, tasks=3):
    weight, masks, words, alphas, tasks = task_inputs("cpu", 5, 37, 4, tasks, kind, dtype=torch.float64)
    return weight, pack_masks(masks), alphas, tasks


@pytest.mark.parametrize("kind", KINDS)
def test_gradcheck(kind):
    """x, weight and alphas, for both ops, on the reference in float64 (and once more through
    their backward: double backward)."""
    weight, packed, alphas, tasks = f64_inputs(kind)
    x = torch.randn(4, 37, dtype=torch.float64, requires_grad=True)
    task = torch.tensor([2, 0, 2, 1]).remainder(tasks)
    leaves = [x, weight.requires_grad_()] + ([] if alphas is None else [alphas.requires_grad_()])

    def every(*a):
        return ops.every_task_linear(a[0], a[1], packed, a[2] if len(a) > 2 else None)

    def rows(*a):
        return ops.task_row_linear(a[0], a[1], packed, a[2] if len(a) > 2 else None, task)

    with impresslearn.backend("reference"):
        for fn in (every, rows):
            assert torch.autograd.gradcheck(fn, leaves)
            assert torch.autograd.gradgradcheck(fn, leaves)


@pytest.mark.parametrize("backend", ["native", pytest.param("triton", marks=pytest.mark.triton)])
@pytest.mark.parametrize("kind", KINDS)
def test_gradients_agree_with_the_reference(backend, kind):
    if backend not in impresslearn.available_backends():
        pytest.skip(f"{backend} unavailable: {impresslearn.backends.why_unavailable(backend)}")
    device = DEVICE if backend == "triton" else "cpu"
    weight, masks, words, alphas, tasks = task_inputs(device, 9, 40, 5, 3, kind)
    packed = pack_masks(masks.to(device))
    x = torch.randn(6, 40, device=device)
    task = torch.tensor([2, 0, 2, 1, 0, 0]).remainder(tasks).to(device)
    grads = {}
    for b in ("reference", backend):
        with impresslearn.backend(b):
            leaves = [x.clone().requires_grad_()] + ([] if alphas is None else [alphas.clone().requires_grad_()])
            a = leaves[1] if alphas is not None else None
            every = ops.every_task_linear(leaves[0], weight, packed, a).sin().sum()
            (every + ops.task_row_linear(leaves[0], weight, packed, a, task).cos().sum()).backward()
            grads[b] = [leaf.grad for leaf in leaves]
    for got, want in zip(grads[backend], grads["reference"]):
        torch.testing.assert_close(got.cpu(), want.cpu(), rtol=1e-4, atol=1e-4)


def test_leading_dimensions_are_rows():
    """A [B, L, K] input is B·L rows; task_row_linear takes a task per row of that shape."""
    weight, packed, alphas, tasks = f64_inputs("per_channel")
    x = torch.randn(2, 3, 37, dtype=torch.float64)
    task = torch.tensor([[0, 1, 2], [2, 2, 0]])
    every = ops.every_task_linear(x, weight, packed, alphas)
    assert every.shape == (tasks, 2, 3, 5)
    rows = ops.task_row_linear(x, weight, packed, alphas, task)
    torch.testing.assert_close(rows, every.permute(1, 2, 0, 3)[torch.arange(2)[:, None], torch.arange(3), task])


def test_what_the_ops_refuse():
    weight, packed, alphas, tasks = f64_inputs("per_layer")
    x = torch.randn(4, 37, dtype=torch.float64)
    with pytest.raises(IndexError, match=r"task ids must lie in \[0, 3\)"):
        ops.task_row_linear(x, weight, packed, alphas, torch.tensor([0, 1, 3, 0]))
    with pytest.raises(ValueError, match="one task per row"):
        ops.task_row_linear(x, weight, packed, alphas, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"alphas must have shape \[tasks, 4\]"):
        ops.every_task_linear(x, weight, packed, alphas[:, :2])
    with pytest.raises(TypeError, match="input dtype"):
        ops.every_task_linear(x.float(), weight, packed, alphas)
    with pytest.raises(ValueError, match="task must be int64"):
        ops._task_row_linear(x, weight, packed.words, alphas, torch.tensor([0, 1, 2, 0], dtype=torch.int32))
