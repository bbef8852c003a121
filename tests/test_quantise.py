"""Quantised alphas (impresslearn.layers.quantise, methods.ImpressLearn(quant=...)): a task trains
through straight-through rounding, keeps exactly the values training saw, and is counted as its
bit-packed codes and float16 scales."""

import copy

import pytest
import torch
from continual_helpers import permuted, trained

from impresslearn import layers, methods
from impresslearn.coding import code_levels, decode_levels
from impresslearn.continual import masks
from impresslearn.continual.backbone import impress_model
from impresslearn.continual.training import TrainConfig
from impresslearn.layers import AlphaQuant, impress_layers
from impresslearn.layers.quantise import coded_bytes, codes, dequantise, quantise, quantised_bytes

FAST = TrainConfig(optimizer="adam", lr=1e-2, epochs=0.05, batch_size=128)


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
@pytest.mark.parametrize("scale", ["layer", "row"])
def test_quantised_values_are_codes_times_float16_scales(bits, scale):
    alpha = torch.randn(5, 37, generator=torch.Generator().manual_seed(bits))
    q = AlphaQuant(bits, scale)
    c, s = codes(alpha, q)
    assert c.dtype == torch.int8 and int(c.abs().max()) == 2 ** (bits - 1) - 1  # the largest reaches the top level
    assert s.dtype == torch.float16 and s.shape == ((1, 37) if scale == "row" else (1, 1))
    value = quantise(alpha, q)
    assert torch.equal(value, c.float() * s.float())
    assert (value - alpha).abs().max() <= s.float().max() / 2 + 1e-6  # rounding error at most half a step
    a = alpha.clone().requires_grad_()
    quantise(a, q).sum().backward()
    assert torch.equal(a.grad, torch.ones_like(a))  # straight through


def test_bytes_are_the_codes_and_the_scales():
    assert quantised_bytes((5, 300), AlphaQuant(4, "row")) == 5 * 300 * 4 // 8 + 2 * 300
    assert quantised_bytes((5,), AlphaQuant(3, "layer")) == 2 + 2
    with pytest.raises(ValueError, match="alpha bits must be a whole number from 2 to 8"):
        AlphaQuant(1)
    with pytest.raises(ValueError, match="alpha scale must be one of layer, row"):
        AlphaQuant(4, "channel")


def test_a_quantised_task_keeps_what_it_trained_with():
    cfg, sup = trained()
    basis = masks.task_masks(sup)
    model = impress_model(cfg, basis, per_channel=True, num_tasks=2)
    q = AlphaQuant(4, "row")
    learner = methods.ImpressLearn(model, FAST, quant=q)
    learner.learn(0, permuted().train(5, 128, seed=0), progress=False, finish=False)
    x = torch.randn(8, 784)
    layers.set_task(model, 0)
    model.eval()
    with torch.no_grad():
        before = model(x)
    learner.finish(0)
    with torch.no_grad():
        assert torch.equal(model(x), before)  # the finished task computes what training computed
    for _, m in impress_layers(model):
        kept = m.task_alpha(0)
        c, s = codes(kept, q)
        assert torch.equal(kept, c.float() * s.float())  # exactly codes times scales
    # LeNet-300-100, K = 3 per channel, 4-bit codes and a float16 scale per row
    assert learner.task_bytes(0)["total"] == sum(quantised_bytes(m.alpha_shape(), q) for _, m in impress_layers(model))
    assert learner.task_bytes(0)["total"] == (3 * 410 * 4) // 8 + 2 * 410
    # the smallest form: the codes range-coded (the task's own, decoded back) beside the same scales
    counted = learner.task_bytes(0)
    coded = sum(coded_bytes(m.task_alpha(0), q) for _, m in impress_layers(model))
    assert counted["alphas_coded"] == coded and counted["smallest"] == min(coded, counted["alphas"])
    for _, m in impress_layers(model):
        c, _ = codes(m.task_alpha(0), q)
        assert torch.equal(decode_levels(code_levels(c, q.levels), c.numel(), q.levels), c.reshape(-1))


def test_quantisation_changes_what_a_task_learns():
    cfg, sup = trained()
    model = impress_model(cfg, masks.task_masks(sup), per_channel=True, num_tasks=1)
    plain, quant = copy.deepcopy(model), copy.deepcopy(model)
    methods.ImpressLearn(plain, FAST).learn(0, permuted().train(5, 128, seed=0), progress=False)
    methods.ImpressLearn(quant, FAST, quant=AlphaQuant(2, "layer")).learn(0, permuted().train(5, 128, seed=0), progress=False)
    a, b = impress_layers(plain)[0][1].task_alpha(0), impress_layers(quant)[0][1].task_alpha(0)
    assert not torch.equal(a, b) and b.unique().numel() <= 3  # 2 bits: -1, 0, 1 times one scale


def test_row_scales_need_per_channel_alphas():
    cfg, sup = trained()
    model = impress_model(cfg, masks.task_masks(sup), num_tasks=1)
    with pytest.raises(ValueError, match="per-row alpha scales need per-channel alphas"):
        methods.ImpressLearn(model, FAST, quant=AlphaQuant(4, "row"))


def test_a_checkpoint_keeps_the_quantisation(tmp_path):
    """Saved and loaded, a quantised model's layers still train and keep their alphas quantised
    (an open task goes on as it trained); a record of another form is one sentence."""
    from file_damage import rewrite

    from impresslearn import checkpoint, load_checkpoint, save_checkpoint

    cfg, sup = trained()
    basis = masks.task_masks(sup)
    model = impress_model(cfg, basis, per_channel=True, num_tasks=2)
    q = AlphaQuant(3, "row")
    learner = methods.ImpressLearn(model, FAST, quant=q)
    learner.learn(0, permuted().train(5, 128, seed=0), progress=False)
    learner.learn(1, permuted().train(6, 128, seed=1), progress=False, finish=False)  # task 1 stays open
    path = tmp_path / "q.safetensors"
    save_checkpoint(path, model)
    fresh = impress_model(cfg, basis, per_channel=True, num_tasks=1)
    load_checkpoint(path, fresh)
    x = torch.randn(8, 784)
    for t in (0, 1):
        layers.set_task(model, t), layers.set_task(fresh, t)
        with torch.no_grad():
            assert torch.equal(model.eval()(x), fresh.eval()(x))
    assert all(m.alpha_quant == q for _, m in impress_layers(fresh))
    data = path.read_bytes()

    def bad(header):
        next(iter(header["layers"].values()))["alpha_quant"] = [9, "row"]

    path.write_bytes(rewrite(data, checkpoint.META_KEY, bad))
    with pytest.raises(checkpoint.CheckpointError, match=r"alpha_quant \[9, 'row'\]: alpha bits must be a whole number"):
        load_checkpoint(path, impress_model(cfg, basis, per_channel=True, num_tasks=1))


@pytest.mark.parametrize("scale", ["layer", "row"])
@pytest.mark.parametrize("bits", [2, 3, 5])
def test_the_mse_step_rounds_closer_than_the_max_step(bits, scale):
    """A few large alphas set the 'max' step; 'mse' clips them when that rounds the rest closer,
    and a task keeps exactly its codes times its scales either way."""
    g = torch.Generator().manual_seed(bits)
    alpha = torch.randn(5, 37, generator=g) * 0.1 + 0.2
    alpha[0, :3] = 2.0  # outliers
    err = {}
    for step in ("max", "mse"):
        q = AlphaQuant(bits, scale, step)
        c, s = codes(alpha, q)
        value = quantise(alpha, q)
        assert torch.equal(value, dequantise(c, s, q))
        err[step] = float((value - alpha).square().sum())
    assert err["mse"] <= err["max"]  # the max step is among those tried
    if bits == 3:  # the outliers' step rounds the rest to zero; clipping them brings it closer
        assert err["mse"] < err["max"]
    with pytest.raises(ValueError, match="alpha step must be one of"):
        AlphaQuant(4, "layer", "lsq")
