"""The primitive table holds every backend (docs/design.md §5.1): each backend's kernels take the
reference's parameters, every primitive runs on every backend by a kernel or a declared fallback,
a missing kernel without one is an error (never a silent run of the reference), and doctor and
`backend_for` say which runs where."""

import inspect
import re
import types
from pathlib import Path

import pytest
import torch
from cases import BACKENDS, needs

import impresslearn
from impresslearn import backends, doctor, ops, reference
from impresslearn.primitives import PRIMITIVES, MissingKernel, Primitive, resolve

DESIGN = Path(__file__).resolve().parents[1] / "docs" / "design.md"


def test_the_reference_implements_exactly_the_declared_primitives():
    assert set(reference.KERNELS) == set(PRIMITIVES)


@pytest.mark.parametrize("backend", [pytest.param(b, marks=needs(b)) for b in BACKENDS])
def test_every_kernel_takes_the_declared_parameters(backend):
    kernels = backends.module(backend).KERNELS
    assert kernels, backend
    unknown = set(kernels) - set(PRIMITIVES)
    assert not unknown, f"{backend} registers kernels no primitive declares: {sorted(unknown)}"
    for name, fn in kernels.items():
        sig = inspect.signature(fn).parameters.values()
        params = tuple(p.name for p in sig if p.kind is not p.KEYWORD_ONLY)
        assert params == PRIMITIVES[name].params, f"{backend}.{name}{params} is not {name}{PRIMITIVES[name].params}"
        # a launcher's own options (a Triton path forced by the tests) come after, keyword-only, defaulted
        assert all(p.default is not p.empty for p in sig if p.kind is p.KEYWORD_ONLY), f"{backend}.{name}"


@pytest.mark.parametrize("backend", [pytest.param(b, marks=needs(b)) for b in BACKENDS])
def test_every_primitive_runs_on_every_backend_by_a_kernel_or_a_declared_fallback(backend):
    kernels = backends.module(backend).KERNELS
    for name, spec in PRIMITIVES.items():
        how = resolve(kernels, name, reference.KERNELS, backend).how
        assert how == "kernel" or (how == "composed" and spec.compose) or (how == "portable" and spec.portable)


def test_a_missing_kernel_without_a_fallback_is_an_error_not_the_reference(monkeypatch):
    # a backend whose combine is misspelt: every op that needs it refuses, naming what is missing
    fake = types.SimpleNamespace(
        __name__="impresslearn.native", supports=lambda device: True, KERNELS={"combne": reference.combine}
    )
    monkeypatch.setitem(backends._loaded, "native", fake)
    w, words, alpha = torch.randn(3, 5), torch.zeros(2, 3, 1, dtype=torch.int32), torch.ones(2)
    with impresslearn.backend("native"):
        with pytest.raises(MissingKernel, match="backend native has no combine kernel"):
            ops.combine(w, impresslearn.PackedMasks(words, w.shape), alpha)
        # impress_linear is declared composed from combine: without a combine it is missing too
        with pytest.raises(MissingKernel, match="has no (impress_linear|combine) kernel"):
            ops.impress_linear(torch.randn(2, 5), w, impresslearn.PackedMasks(words, w.shape), alpha)
        # a portable primitive runs the reference's code, as declared
        assert torch.equal(ops.threshold_mask(torch.tensor([-1.0, 2.0])), torch.tensor([0.0, 1.0]))
        # and doctor shows the gap
        assert ops.primitive_backends("cpu")["combine"] == "missing"
        assert doctor.primitive_table()["combine"]["native"] == "MISSING"


def test_resolve_follows_the_declaration():
    spec = PRIMITIVES["impress_linear"]
    assert spec.composed_from == ("combine",) and not spec.portable
    assert resolve({"combine": reference.combine}, "impress_linear", reference.KERNELS).how == "composed"
    assert resolve({}, "threshold_mask", reference.KERNELS).fn is reference.threshold_mask
    with pytest.raises(MissingKernel):
        resolve({}, "popup_pack", reference.KERNELS, "triton")
    with pytest.raises(KeyError, match="not a primitive"):
        resolve(reference.KERNELS, "combyne", reference.KERNELS)
    with pytest.raises(ValueError, match="go together"):
        Primitive("x", ("a",), "x", check=lambda a: None, fake=lambda a: a, composed_from=("combine",))


def test_backend_for_and_doctor_say_which_primitive_runs_where():
    table = ops.primitive_backends(torch.device("cpu"))
    assert set(table) == set(PRIMITIVES)
    chosen = ops.backend_for("cpu")
    assert table["combine"] == chosen
    report = doctor.report()
    assert set(report["primitives"]) == set(PRIMITIVES)
    for row in report["primitives"].values():
        assert set(row) == set(backends.NAMES)
        assert row["reference"] == "kernel"
    text = doctor.format_report(report)
    assert re.search(r"primitive\s+reference\s+native\s+triton", text)
    assert re.search(r"threshold_mask\s+kernel", text)


def test_design_lists_every_primitive_with_its_parameters():
    text = DESIGN.read_text()
    section = text[text.index("### 5.1") : text.index("### 5.2")]
    for name, spec in PRIMITIVES.items():
        assert f"{name}({', '.join(spec.params)})" in section, name


@pytest.mark.parametrize("backend", [pytest.param("native", marks=needs("native"))])
def test_the_native_fakes_refuse_what_the_ops_refuse(backend):
    # the native library's fakes are made from the same declarations as the ops': under fake
    # tensors (torch.compile's tracing) a bad input is refused in the ops' words, not traced
    from torch._subclasses.fake_tensor import FakeTensorMode

    weight, alpha = torch.randn(3, 5), torch.ones(2)
    words = torch.zeros(2, 3, 2, dtype=torch.int32)  # 2 words a row: the weight has 5 columns, 1 word
    with pytest.raises(ValueError) as want:
        ops._combine(weight, words, alpha)
    with FakeTensorMode() as mode:
        fakes = [mode.from_tensor(t) for t in (weight, words, alpha)]
        with pytest.raises(ValueError) as got:
            torch.ops.impresslearn_native.combine(*fakes)
        good = mode.from_tensor(torch.zeros(2, 3, 1, dtype=torch.int32))
        out = torch.ops.impresslearn_native.combine(fakes[0], good, fakes[2])
    assert str(got.value) == str(want.value) and "do not fit a weight of shape (3, 5)" in str(got.value)
    assert out.shape == weight.shape and out.dtype == weight.dtype
