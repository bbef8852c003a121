"""popup_mask / popup_pack (the edge-popup top-k: exactly k ones, ties toward the lower flat
index, NaN above +inf as torch.sort has it) and threshold_mask on every backend, against the
Python-sorted oracle of tests/cases.py: ties, NaN, ±0, ±inf, every dtype, sizes that span
several blocks (Triton) or chunks (native); the straight-through gradients through the ops.

Triton has no threshold_mask (the op layer runs the reference's for it). Last, the edge cases of
docs/design.md §5.4: 0-d, one-element and all-NaN scores, and what the op layer refuses.
"""

import pytest
import torch
from cases import DEVICE, DTYPES, Flavour, backend_grid, case_id, only, pack_oracle, popup_k_oracle, popup_oracle
from hypothesis import given
from hypothesis import strategies as st

import impresslearn
from impresslearn import ops, reference
from impresslearn.format import rows_cols, unpack_bits
from impresslearn.layers import SupermaskConv2d, SupermaskLinear

POPUP = backend_grid()
SPECIAL = torch.tensor([float("nan"), -float("nan"), -0.0, 0.0, float("inf"), -float("inf"), 1e-40, -1e-40])


def random_scores(numel, seed, levels, special, dtype):
    """Normal scores; with `levels`, that many distinct values (ties everywhere); with `special`,
    a quarter of them NaN, ±0, ±inf or denormal."""
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(numel, generator=g)
    if levels:
        scores = torch.randint(0, levels, (numel,), generator=g).float() - levels // 2
    if special:
        where = torch.randint(0, numel, (max(1, numel // 4),), generator=g)
        scores[where] = SPECIAL[torch.randint(0, len(SPECIAL), (len(where),), generator=g)]
    return scores.to(dtype)


def interpreter_flushes(flavour, dtype) -> bool:
    """Triton's interpreter converts bf16 to fp32 with denormals flushed to zero (compiled
    kernels convert exactly): there a bf16 denormal score ties with 0."""
    if flavour.backend != "triton" or dtype != torch.bfloat16:
        return False
    from impresslearn.kernels.runtime import INTERPRETED

    return INTERPRETED


def check(flavour: Flavour, scores, k, packed=True):
    """popup_mask is the oracle's mask (or the reference's, with NaN); popup_pack its packed words."""
    mask = flavour("popup_mask", scores, k)
    assert mask.dtype == scores.dtype and mask.shape == scores.shape and mask.device == scores.device
    assert int(mask.count_nonzero()) == k
    if not scores.isnan().any():  # Python's sort has no order for NaN
        assert torch.equal(mask.cpu(), popup_oracle(scores.cpu(), k))
    assert torch.equal(mask.cpu(), reference.popup_mask(scores.cpu(), k))  # NaN counts as largest, as in torch.sort
    if packed:
        words = flavour("popup_pack", scores, k)
        expected = pack_oracle(mask.cpu().reshape(1, *rows_cols(scores.shape)))
        assert words.dtype == torch.int32 and torch.equal(words.cpu(), expected)


@pytest.mark.parametrize("flavour", POPUP)
def test_popup_matches_oracle(flavour):
    @given(
        numel=st.integers(1, 400),
        density=st.floats(1e-3, 1.0),
        seed=st.integers(0, 2**31 - 1),
        levels=st.sampled_from([0, 1, 3, 50]),
        special=st.booleans(),
        dtype=st.sampled_from(DTYPES),
    )
    def run(numel, density, seed, levels, special, dtype):
        k = popup_k_oracle(numel, density)
        assert ops.popup_k(numel, density) == k
        scores = random_scores(numel, seed, levels, special, dtype)
        if interpreter_flushes(flavour, dtype):
            denormal = (scores != 0) & (scores.float().abs() < torch.finfo(torch.float32).tiny)
            scores = torch.where(denormal, 0.0, scores)
        check(flavour, scores.to(flavour.device), k, packed=False)

    run()


@pytest.mark.parametrize("flavour", POPUP)
def test_popup_pack_matches_oracle(flavour):
    @given(
        rows=st.integers(1, 9),
        cols=st.integers(1, 80),
        density=st.floats(1e-3, 1.0),
        seed=st.integers(0, 2**31 - 1),
        levels=st.sampled_from([0, 2, 7]),
        dtype=st.sampled_from(DTYPES),
    )
    def run(rows, cols, density, seed, levels, dtype):
        scores = random_scores(rows * cols, seed, levels, False, dtype).reshape(rows, cols).to(flavour.device)
        k = popup_k_oracle(rows * cols, density)
        words = flavour("popup_pack", scores, k)
        assert words.dtype == torch.int32 and words.shape == (1, rows, (cols + 31) // 32)
        assert torch.equal(words.cpu(), pack_oracle(popup_oracle(scores.cpu(), k).reshape(1, rows, cols)))

    run()


# Several of Triton's histogram blocks and counting/writing blocks (ties ranked across blocks).
MULTI_BLOCK = (67, 71)


@only("triton")
def test_triton_multi_block_case_spans_blocks():
    from impresslearn.kernels.popup import HIST_BLOCK, WRITE_WORDS

    assert MULTI_BLOCK[0] * MULTI_BLOCK[1] > max(HIST_BLOCK, 32 * WRITE_WORDS)


@pytest.mark.parametrize(
    "flavour, shape, levels",
    backend_grid(
        [(s, lv) for s in [(1,), (17,), (7, 33), (5, 3, 3, 3), MULTI_BLOCK] for lv in (0, 1, 3)],
        ids=lambda s, lv: f"{case_id(s)}-levels{lv}",
    ),
)
def test_popup_sizes_and_ties(flavour, shape, levels):
    n = torch.Size(shape).numel()
    g = torch.Generator().manual_seed(n + levels)
    s = torch.randn(shape, generator=g) if not levels else torch.randint(0, levels, shape, generator=g).float()
    scores = s.to(flavour.device)
    for k in sorted({1, popup_k_oracle(n, 0.1), n}):
        check(flavour, scores, k, packed=False)
    check(flavour, scores, max(1, n // 3))  # the packed words too (the interpreter is slow: one k)


@pytest.mark.parametrize("flavour, dtype", backend_grid([(d,) for d in (torch.float16, torch.bfloat16, torch.float64)]))
def test_popup_dtypes(flavour, dtype):
    """fp16/bf16 select through fp32 keys (exact), fp64 through 64-bit keys; ties are common in fp16/bf16."""
    for levels in (0, 3):
        scores = random_scores(13 * 95, 0, levels, False, dtype).reshape(13, 95).to(flavour.device)
        check(flavour, scores, 300)


@pytest.mark.parametrize("flavour", POPUP)
def test_ties_go_to_lower_index(flavour):
    scores = torch.tensor([1.0, 2.0, 2.0, 2.0, 0.0, 2.0]).to(flavour.device)
    assert flavour("popup_mask", scores, 2).tolist() == [0, 1, 1, 0, 0, 0]
    zeros = torch.tensor([0.0, -0.0, 0.0]).to(flavour.device)
    assert flavour("popup_mask", zeros, 2).tolist() == [1, 1, 0]  # -0 ties with +0


@pytest.mark.parametrize("flavour", POPUP)
def test_special_values(flavour):
    """NaN ranks above +inf (torch.sort's order), -0.0 ties with 0.0, infinities and negatives in place."""
    scores = torch.tensor([0.0, -0.0, 1.0, float("nan"), -1.0, float("inf"), -0.0, 0.0, float("-inf"), -2.5])
    order = [3, 5, 2, 0, 1, 6, 7, 4, 9, 8]  # by rank, equal values by index
    for k in range(1, scores.numel() + 1):
        expected = torch.zeros(scores.numel())
        expected[order[:k]] = 1
        assert torch.equal(flavour("popup_mask", scores.to(flavour.device), k).cpu(), expected), k


@pytest.mark.parametrize("flavour", POPUP)
def test_absolute_scores_with_ties_across_blocks(flavour):
    """What the layers pass: |S| with many exact ties, k cutting through a value shared by several blocks."""
    g = torch.Generator().manual_seed(3)
    s = (torch.randint(-4, 5, MULTI_BLOCK, generator=g).float() / 4).to(flavour.device)
    a = s.abs()
    for k in (int((a > 0.5).sum()) + 1, int((a > 0.25).sum()) + 777):
        check(flavour, a, k)


@only("native")
@pytest.mark.parametrize("levels", [0, 4])
@pytest.mark.parametrize("dtype", DTYPES, ids=case_id)
def test_native_popup_across_chunks(dtype, levels):
    # Enough scores for several histogram chunks (one per thread) and a tie cut inside a later chunk.
    from impresslearn import native

    scores = random_scores(150_001, 7, levels, False, dtype)
    for k in (1, 40_000, 75_001, 150_001):
        out = native.popup_mask(scores, k)
        assert torch.equal(out, reference.popup_mask(scores, k))
        words = native.popup_pack(scores.reshape(1, -1), k)
        assert torch.equal(unpack_bits(words, scores.numel()).reshape(-1).to(dtype), out)


@only("native")
def test_native_rejects_bad_k():
    from impresslearn import native

    with pytest.raises(RuntimeError, match="k must lie"):
        native.popup_mask(torch.randn(10), 11)
    with pytest.raises(RuntimeError, match="k must lie"):
        native.popup_pack(torch.randn(2, 5), 0)
    with pytest.raises(RuntimeError, match="floating point"):
        native.popup_mask(torch.arange(10), 3)


@pytest.mark.parametrize("numel, density, k", [(10, 0.1, 1), (10, 1.0, 10), (3, 0.5, 2), (1000, 0.05, 50)])
def test_popup_k_counts(numel, density, k):
    assert ops.popup_k(numel, density) == k


# --------------------------------------------------------------------------- threshold_mask


@pytest.mark.parametrize("flavour, dtype", backend_grid([(d,) for d in DTYPES], backends=("reference", "native")))
def test_threshold_mask(flavour, dtype):
    """1 where score >= 0 (-0.0 included, NaN not), else 0, in the scores' dtype."""
    scores = torch.cat([SPECIAL, torch.randn(300, generator=torch.Generator().manual_seed(0))]).to(dtype)
    out = flavour("threshold_mask", scores)
    assert out.dtype == dtype
    assert out.tolist() == [1.0 if v >= 0 else 0.0 for v in scores.tolist()]
    assert out[:4].tolist() == [0, 0, 1, 1]  # NaN, -NaN, -0.0, 0.0


# --------------------------------------------------------------------------- through the public ops


@pytest.mark.parametrize("flavour", POPUP)
def test_straight_through_ops(flavour):
    scores = torch.randn(6, 11, generator=torch.Generator().manual_seed(0)).to(flavour.device).requires_grad_()
    g = torch.randn(6, 11, generator=torch.Generator().manual_seed(1)).to(flavour.device)
    with impresslearn.backend(flavour.backend):
        mask = ops.popup_mask(scores.abs(), 0.25)
        (mask * g).sum().backward()
        packed = ops.popup_pack(scores.detach().abs(), 0.25)
        grad_popup, scores.grad = scores.grad, None
        threshold = ops.threshold_mask(scores)
        (threshold * g).sum().backward()
    assert torch.equal(mask.detach().cpu(), popup_oracle(scores.detach().abs().cpu(), 17))
    torch.testing.assert_close(grad_popup, torch.sign(scores.detach()) * g)  # through abs: sign(S) * g
    assert packed.num_masks == 1 and packed.shape == scores.shape
    assert torch.equal(packed.unpack()[0].float(), mask.detach())
    assert torch.equal(threshold.detach(), (scores.detach() >= 0).float())
    torch.testing.assert_close(scores.grad, g)


@pytest.mark.parametrize("layer", ["linear", "conv"])
@pytest.mark.parametrize("flavour", backend_grid(backends=("native", "triton")))
def test_supermask_layers_equal_reference(flavour, layer):
    """A SupermaskLinear / Conv2d forward and backward are the same under the backend and the reference."""
    torch.manual_seed(0)
    net = SupermaskLinear(37, 13, density=0.3) if layer == "linear" else SupermaskConv2d(3, 5, 3, density=0.3)
    net = net.to(flavour.device)
    x = torch.randn((4, 37) if layer == "linear" else (2, 3, 6, 6)).to(flavour.device)
    results = {}
    for name in ("reference", flavour.backend):
        net.zero_grad()
        with impresslearn.backend(name):
            out = net(x)
            out.square().sum().backward()
            exported = net.export_masks()
        results[name] = (out.detach(), net.live_scores.grad.clone(), exported.words)
    for got, want in zip(results[flavour.backend], results["reference"]):
        torch.testing.assert_close(got, want)


# --------------------------------------------------------------------------- GPU, realistic sizes


@pytest.mark.cuda
@only("triton")
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("shape", [(300, 784), (512, 512, 3, 3), (2048, 1170), (5000, 5000)], ids=case_id)
def test_popup_cuda_realistic(shape):
    """1 M-25 M scores (ResNet-50 sized), fp32/fp16/bf16, with and without ties, against torch.sort's order."""
    from impresslearn import kernels

    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for levels in (0, 7):
            g = torch.Generator().manual_seed(0)
            s = torch.randn(shape, generator=g) if not levels else torch.randint(0, levels, shape, generator=g).float()
            scores = s.to(dtype).to(DEVICE).abs()
            n = scores.numel()
            for density in (0.05, 0.3):
                k = popup_k_oracle(n, density)
                mask = kernels.popup_mask(scores, k)
                assert torch.equal(mask, reference.popup_mask(scores, k))
                assert torch.equal(kernels.popup_pack(scores, k), reference.popup_pack(scores, k))


# --------------------------------------------------------------------------- edge cases (docs/design.md §5.4)

NAN, INF = float("nan"), float("inf")
SINGLE_SCORES = [NAN, -NAN, INF, -INF, 0.0, -0.0, 1.5, -1e-40]


@pytest.mark.parametrize("flavour, dtype", backend_grid([(d,) for d in DTYPES]))
def test_one_score(flavour, dtype):
    """A 0-d score is one score: its popup mask is 1 (k = 1 is the only k), of shape (). One
    element in any shape keeps it too, packed as bit 0 of one word; NaN and infinities alike."""
    for value in SINGLE_SCORES:
        for shape in [(), (1,), (1, 1)]:
            scores = torch.full(shape, value).to(dtype).to(flavour.device)
            mask = flavour("popup_mask", scores, 1)
            assert mask.shape == scores.shape and mask.dtype == dtype and mask.device == scores.device
            assert float(mask.reshape(-1)[0]) == 1.0
            if shape:
                assert flavour("popup_pack", scores, 1).tolist() == [[[1]]]


@pytest.mark.parametrize("flavour, dtype", backend_grid([(d,) for d in DTYPES]))
def test_all_nan_scores(flavour, dtype):
    """NaN (of either sign) ties with every other NaN: all-NaN scores keep the first k in flat order."""
    for shape in [(5,), (3, 40)]:
        n = torch.Size(shape).numel()
        signs = torch.where(torch.arange(n) % 3 == 0, -1.0, 1.0)
        scores = (signs * NAN).reshape(shape).to(dtype).to(flavour.device)
        for k in sorted({1, 2, n // 2, n}):
            expected = (torch.arange(n) < k).to(dtype).reshape(shape)
            assert torch.equal(flavour("popup_mask", scores, k).cpu(), expected), (shape, k)
            rows, cols = rows_cols(shape)
            assert torch.equal(flavour("popup_pack", scores, k).cpu(), pack_oracle(expected.reshape(1, rows, cols)))


@pytest.mark.parametrize("flavour", POPUP)
def test_nan_above_inf_and_signed_zeros_in_tiny_inputs(flavour):
    """The order of §2.2 on two and three scores: NaN > +inf, -0 == +0 (lower index first), -inf last."""
    for scores, k, expected in [
        ([INF, NAN], 1, [0, 1]),
        ([-NAN, INF], 1, [1, 0]),
        ([-0.0, 0.0], 1, [1, 0]),
        ([0.0, -0.0], 1, [1, 0]),
        ([-INF, -0.0, NAN], 2, [0, 1, 1]),
        ([-INF, -INF], 1, [1, 0]),
    ]:
        s = torch.tensor(scores).to(flavour.device)
        assert flavour("popup_mask", s, k).tolist() == expected, scores
        assert flavour("popup_pack", s, k).tolist() == [[[int(b)] for b in expected]], scores


@pytest.mark.parametrize("flavour, dtype", backend_grid([(d,) for d in DTYPES]))
def test_threshold_of_tiny_inputs_through_ops(flavour, dtype):
    """threshold_mask on 0-d, one-element and all-NaN scores, through the op layer (Triton runs the
    reference's primitive): 1 for >= 0 (-0 included), 0 for NaN of either sign and for -inf."""
    with impresslearn.backend(flavour.backend):
        for value in SINGLE_SCORES:
            for shape in [(), (1,), (1, 1)]:
                scores = torch.full(shape, value).to(dtype)
                out = ops.threshold_mask(scores.to(flavour.device))
                assert out.shape == shape and out.dtype == dtype
                kept = float(scores.reshape(-1)[0]) >= 0  # in the dtype: -1e-40 is -0.0 in fp16
                assert float(out.reshape(-1)[0]) == float(kept), value
        assert not ops.threshold_mask(torch.full((3, 7), NAN).to(dtype).to(flavour.device)).any()
        # and popup through the op layer, 0-d: density 1 and any other density keep the one score
        for density in (1.0, 0.01):
            assert ops.popup_mask(torch.tensor(NAN).to(dtype).to(flavour.device), density).tolist() == 1.0


@pytest.mark.parametrize("flavour", POPUP)
def test_empty_and_0d_refusals_through_ops(flavour):
    """Empty scores are refused by every op, and 0-d scores by popup_pack (a packed mask needs a
    weight shape): one ValueError from the op layer, whatever the backend."""
    with impresslearn.backend(flavour.backend):
        for shape in [(0,), (3, 0), (0, 0, 2)]:
            scores = torch.zeros(shape, device=flavour.device)
            for call in (
                lambda: ops.popup_mask(scores, 0.5),
                lambda: ops.popup_pack(scores, 0.5),
                lambda: ops.threshold_mask(scores),
                lambda: ops._popup_mask(scores, 1),
            ):
                with pytest.raises(ValueError, match="empty"):
                    call()
        for call in (lambda s: ops.popup_pack(s, 0.5), lambda s: ops._popup_pack(s, 1)):
            with pytest.raises(ValueError, match="0-d"):
                call(torch.tensor(1.0, device=flavour.device))
