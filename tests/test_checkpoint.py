"""Checkpoints: round trips, rebuilt backbones, version and damage checks, atomic saves; loads are
all or nothing (a refused file leaves the model exactly as it was) and self-checking (checksums,
names, shapes, dtypes, header fields), and files from before the checksums still load."""

import json
import os
import stat

import pytest
import torch
import torch.nn as nn
from file_damage import (
    as_legacy,
    data_offsets,
    data_start,
    entry_at,
    entry_range,
    flip_bit,
    one_sentence,
    rewrite,
    set_dtype,
    split,
    tensors_of,
)
from safetensors.torch import save_file

import impresslearn as il
from impresslearn import checkpoint, layers, models


def supermask_lenet(seed=0, tasks=2):
    return il.convert(models.lenet_300_100(), "supermask", density=0.1, seed=seed, num_tasks=tasks)


def outputs(model, x, tasks):
    outs = []
    for t in range(tasks):
        il.set_task(model, t)
        outs.append(model(x))
    return torch.stack(outs)


def test_supermask_round_trip_rebuilds_backbone(tmp_path):
    model = supermask_lenet(seed=0, tasks=3)
    for t in range(3):  # trained tasks are finished: 1 bit per weight each
        il.set_task(model, t)
        il.finish_task(model)
    path = tmp_path / "masks.safetensors"
    il.save_checkpoint(path, model, metadata={"benchmark": "permuted-mnist"})
    fresh = supermask_lenet(seed=99, tasks=1)  # another seed: refused, unless asked to take the file's
    with pytest.raises(checkpoint.CheckpointError, match=r"layer '1' has the backbone signed_constant|kaiming_normal from seed"):
        il.load_checkpoint(path, fresh)
    meta = il.load_checkpoint(path, fresh, backbone="file")
    assert meta == {"benchmark": "permuted-mnist"}
    x = torch.randn(4, 784)
    torch.testing.assert_close(outputs(fresh, x, 3), outputs(model, x, 3))
    for (_, a), (_, b) in zip(layers.task_modules(model), layers.task_modules(fresh)):
        assert a.export_masks() == b.export_masks()
    # masks only: about 1 bit per weight per task, far below the float scores
    assert os.path.getsize(path) < 3 * 266_200 / 8 * 1.1 + 4096


def test_impress_round_trip_with_batchnorm_and_scores(tmp_path):
    model = il.convert(
        models.cifar_resnet18(num_classes=5, width=8), "impress", basis_size=3, per_channel=True, num_tasks=2, seed=4
    )
    model.train()
    il.set_task(model, 1)
    with torch.no_grad():
        for _, m in layers.task_modules(model):
            if isinstance(m, layers.ImpressLayer):
                m.task_alpha(1).normal_()
        model(torch.randn(4, 3, 32, 32))  # moves task 1's BatchNorm statistics
    path = tmp_path / "impress.safetensors"
    il.save_checkpoint(path, model)
    fresh = il.convert(models.cifar_resnet18(num_classes=5, width=8), "impress", basis_size=1, seed=4)
    il.load_checkpoint(path, fresh)
    model.eval(), fresh.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(outputs(fresh, x, 2), outputs(model, x, 2))


def test_scores_and_kept_weights(tmp_path):
    model = il.convert(
        nn.Sequential(nn.Linear(10, 6), nn.ReLU(), nn.Linear(6, 2)), "supermask", init="keep", mask="threshold", density=0.5
    )
    path = tmp_path / "s.safetensors"
    il.save_checkpoint(path, model, include_scores=True)
    header, tensors = checkpoint.read_checkpoint(path)
    assert header["layers"]["0"]["weights_included"] and "0.scores" in tensors
    fresh = il.convert(
        nn.Sequential(nn.Linear(10, 6), nn.ReLU(), nn.Linear(6, 2)), "supermask", init="keep", mask="threshold", density=0.5
    )
    il.load_checkpoint(path, fresh)
    for a, b in zip(model.parameters(), fresh.parameters()):
        assert torch.equal(a, b)
    assert torch.equal(model[0].weight, fresh[0].weight) and torch.equal(model[0].bias, fresh[0].bias)


def test_other_format_version(tmp_path):
    path = tmp_path / "v.safetensors"
    il.save_checkpoint(path, supermask_lenet())
    header, tensors = checkpoint.read_checkpoint(path)
    header["format_version"] = 999
    save_file(tensors, path, metadata={"impresslearn": json.dumps(header)})
    with pytest.raises(checkpoint.CheckpointError, match="format version 999"):
        il.load_checkpoint(path, supermask_lenet())


def test_truncated_and_foreign_files(tmp_path):
    path = tmp_path / "t.safetensors"
    il.save_checkpoint(path, supermask_lenet())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(checkpoint.CheckpointError, match="truncated or corrupt"):
        il.load_checkpoint(path, supermask_lenet())
    save_file({"x": torch.zeros(2)}, path)
    with pytest.raises(checkpoint.CheckpointError, match="not an impresslearn checkpoint"):
        il.load_checkpoint(path, supermask_lenet())


def test_model_mismatch(tmp_path):
    path = tmp_path / "m.safetensors"
    il.save_checkpoint(path, supermask_lenet())
    with pytest.raises(checkpoint.CheckpointError, match="do not match"):
        il.load_checkpoint(path, il.convert(models.lenet_300_100(hidden=(300, 50))[:4], "supermask"))
    with pytest.raises(checkpoint.CheckpointError, match="ImpressLinear"):
        il.load_checkpoint(path, il.convert(models.lenet_300_100(), "impress", basis_size=2))


@pytest.mark.parametrize("fail_at", ["fsync", "replace"])
def test_interrupted_save_keeps_old_file(tmp_path, monkeypatch, fail_at):
    path = tmp_path / "a.safetensors"
    old = supermask_lenet(seed=1)
    il.save_checkpoint(path, old)
    before = path.read_bytes()

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, fail_at, interrupt)
    with pytest.raises(KeyboardInterrupt):
        il.save_checkpoint(path, supermask_lenet(seed=2, tasks=4))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["a.safetensors"]  # no temporary file left behind


# --------------------------------------------------------------------------- all or nothing, self-checking


def small(mode, seed=0, tasks=2):
    """Conv (with bias) -> per-task BatchNorm -> Linear, and an unconverted Linear (state.6.*)."""
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=True),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 6 * 6, 5),
        nn.ReLU(),
        nn.Linear(5, 3),
    )
    return il.convert(net, mode, basis_size=3, density=0.3, seed=seed, num_tasks=tasks, include=lambda n, m: n != "6")


def trained(mode):
    """A small model whose every saved tensor differs from a fresh one's: tasks 0 and 1 finished,
    task 2 in training (its floats saved too)."""
    model = small(mode, seed=1, tasks=3)
    model.train()
    with torch.no_grad():
        for t in range(3):
            il.set_task(model, t)
            for _, m in layers.task_modules(model):
                if isinstance(m, layers.TaskStateLayer):
                    m.task_floats(t).normal_()
            model(torch.randn(4, 3, 8, 8))
            if t < 2:
                il.finish_task(model, t)
        model[6].weight.normal_()
    return model


def snapshot(model):
    state = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
    attrs = {
        n: (
            m.num_tasks,
            m.task,
            *(getattr(m, a, None) for a in ("seed", "init", "scale_density", "density", "mask_mode", "per_channel")),
        )
        for n, m in layers.task_modules(model)
    }
    return state, attrs, [id(p) for p in model.parameters()]


def assert_untouched(model, snap):
    state, attrs, params = snapshot(model)
    assert attrs == snap[1] and params == snap[2]
    assert state.keys() == snap[0].keys()
    for k, v in state.items():
        assert v.dtype == snap[0][k].dtype and torch.equal(v, snap[0][k]), k


MODES = ["impress", "supermask"]
# An entry of the first layer, of one in the middle and of a later one, per mode
ENTRIES = {
    "impress": ["0.basis", "0.alpha", "1.running_mean", "4.alpha", "state.6.weight"],
    "supermask": ["0.masks", "1.num_batches_tracked", "4.masks", "state.6.bias"],
}
OTHER_DTYPE = {"I32": "F32", "F32": "I32", "I64": "F64"}  # the same size: only a checksum or a dtype check sees it


@pytest.fixture(params=MODES)
def saved(request, tmp_path):
    """(mode, path of a saved trained model, its bytes, a fresh target model and its snapshot)."""
    mode = request.param
    path = tmp_path / f"{mode}.safetensors"
    il.save_checkpoint(path, trained(mode), metadata={"m": 1})
    target = small(mode, seed=5, tasks=1)
    return mode, path, path.read_bytes(), target, snapshot(target)


def refused(path, data, target, snap, match, entry=None):
    """Write `data` to `path`, load it into `target`: a one-sentence CheckpointError matching
    `match`, naming the file (and `entry`), and `target` as it was."""
    path.write_bytes(data)
    with pytest.raises(checkpoint.CheckpointError, match=match) as info:
        il.load_checkpoint(path, target, backbone="file")  # another seed: a half-applied load would show
    message = str(info.value)
    assert str(path) in message and one_sentence(message), message
    if entry is not None:
        assert repr(entry) in message, message
    assert_untouched(target, snap)


def test_flipped_bits_in_the_data_are_caught(saved):
    mode, path, data, target, snap = saved
    offsets = data_offsets(data, 8)
    for e in ENTRIES[mode]:
        begin, end = entry_range(data, e)
        offsets += [begin, (begin + end) // 2, end - 1]
    for offset in offsets:
        entry = entry_at(data, offset)
        refused(path, flip_bit(data, offset, offset % 8), target, snap, "does not match its SHA-256", entry)


def test_truncated_files_are_caught(saved):
    mode, path, data, target, snap = saved
    for size in (0, 7, 8, 100, data_start(data), data_start(data) + 1, len(data) // 2, len(data) - 1):
        refused(path, data[:size], target, snap, "truncated or corrupt")


@pytest.mark.parametrize("legacy", [False, True])
def test_an_edited_header_dtype_is_caught(saved, legacy):
    mode, path, data, target, snap = saved
    base = as_legacy(data, checkpoint.META_KEY) if legacy else data
    for e in ENTRIES[mode]:
        dtype = split(base)[0][e]["dtype"]
        edited = set_dtype(base, e, OTHER_DTYPE[dtype])
        refused(path, edited, target, snap, "where .* is expected" if legacy else "does not match its SHA-256", e)


def test_missing_extra_and_misshapen_entries(saved):
    mode, path, data, target, snap = saved
    tensors = tensors_of(data)
    for e in ENTRIES[mode]:
        without = {k: v for k, v in tensors.items() if k != e}
        refused(path, rewrite(data, checkpoint.META_KEY, tensors=without), target, snap, "lacks entry", e)
        bigger = dict(tensors, **{e: torch.cat([tensors[e], tensors[e][:1]])})
        refused(path, rewrite(data, checkpoint.META_KEY, tensors=bigger), target, snap, "of shape", e)
    for extra in ("0.extra", "state.6.extra", "zzz"):
        more = dict(tensors, **{extra: torch.zeros(2)})
        refused(path, rewrite(data, checkpoint.META_KEY, tensors=more), target, snap, "unexpected entry", extra)


def test_a_mask_of_the_wrong_density_on_a_later_layer(tmp_path):
    # Before the checks came first, this failed in the last layer with the first ones loaded.
    path = tmp_path / "d.safetensors"
    il.save_checkpoint(path, trained("supermask"))
    data = path.read_bytes()
    tensors = tensors_of(data)
    words = tensors["4.masks"].clone()
    words[2, 0, 0] ^= 1 << 3  # one weight more or less in task 2's mask
    target = small("supermask", seed=5, tasks=1)
    refused(
        path,
        rewrite(data, checkpoint.META_KEY, tensors=dict(tensors, **{"4.masks": words})),
        target,
        snapshot(target),
        "mask 2 keeps",
        "4.masks",
    )


def test_header_fields_versions_and_kinds(saved):
    mode, path, data, target, snap = saved
    key = checkpoint.META_KEY

    def edit(**changes):
        def apply(header):
            for where, value in changes.items():
                layer, _, field = where.partition(":")
                if field:
                    header["layers"][layer][field] = value
                else:
                    header[layer] = value

        return rewrite(data, key, apply)

    refused(path, edit(format_version=999), target, snap, "format version 999; this impresslearn reads versions 1 and 2")
    refused(path, edit(**{"4:seed": "abc"}), target, snap, "invalid 'seed'", "4")
    refused(path, edit(**{"0:init": "nope"}), target, snap, "invalid 'init'", "0")
    refused(path, edit(**{"0:bias": False}), target, snap, "bias", "0")
    refused(path, edit(**{"4:num_tasks": 0}), target, snap, "invalid 'num_tasks'", "4")
    refused(path, edit(**{"1:kind": "SupermaskLinear"}), target, snap, "is a TaskBatchNorm2d in the model", "1")
    refused(path, edit(**{"4:shape": [5, 3]}), target, snap, "weight of shape", "4")
    refused(path, edit(metadata=[1]), target, snap, "'metadata'")
    # the metadata (or any byte of the header) edited in place, without new checksums
    refused(path, data.replace(b'\\"m\\": 1', b'\\"m\\": 2'), target, snap, "its header does not match its SHA-256")
    # checksums removed, the version left at 2: refused rather than read as unchecked
    stripped = as_legacy(data, key, edit=lambda h: h.update(format_version=2))
    refused(path, stripped, target, snap, "lacks the checksums")


def test_legacy_files_still_load(saved):
    mode, path, data, target, snap = saved
    il.load_checkpoint(path, target, backbone="file")
    expect = snapshot(target)
    legacy = small(mode, seed=5, tasks=1)
    path.write_bytes(as_legacy(data, checkpoint.META_KEY))
    assert il.load_checkpoint(path, legacy, backbone="file") == {"m": 1}
    assert_untouched(legacy, (expect[0], expect[1], [id(p) for p in legacy.parameters()]))
    header, _ = checkpoint.read_checkpoint(path)
    assert header["format_version"] == 1 and "sha256" not in header


def test_saved_files_get_the_usual_permissions(tmp_path):
    before = os.umask(0o022)
    try:
        il.save_checkpoint(tmp_path / "p.safetensors", supermask_lenet())
    finally:
        os.umask(before)
    assert stat.S_IMODE(os.stat(tmp_path / "p.safetensors").st_mode) == 0o644
    header, _ = checkpoint.read_checkpoint(tmp_path / "p.safetensors")
    assert header["format_version"] == checkpoint.FORMAT_VERSION == 2 and header["sha256"]


def test_a_model_of_another_backbone_is_refused_not_replaced(tmp_path):
    path = tmp_path / "b.safetensors"
    il.save_checkpoint(path, small("impress", seed=1))
    for other in (
        small("impress", seed=2),
        il.convert(
            nn.Sequential(
                nn.Conv2d(3, 4, 3, bias=True),
                nn.BatchNorm2d(4),
                nn.ReLU(),
                nn.Flatten(),
                nn.Linear(144, 5),
                nn.ReLU(),
                nn.Linear(5, 3),
            ),
            "impress",
            basis_size=3,
            density=0.3,
            seed=1,
            scale=True,
            include=lambda n, m: n != "6",
        ),
    ):
        snap = snapshot(other)
        with pytest.raises(checkpoint.CheckpointError, match="in the checkpoint .convert the model with the checkpoint's"):
            il.load_checkpoint(path, other)
        assert_untouched(other, snap)
    il.load_checkpoint(path, small("impress", seed=1))  # the same backbone loads


def test_float64_models_keep_float64_through_convert_and_a_round_trip(tmp_path):
    def make(k, n):
        net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(144, 3)).double()
        return il.convert(net, "impress", basis_size=k, num_tasks=n, seed=1)

    model = make(2, 2)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    assert model(x).dtype == torch.float64 and model[1].bns[0].running_mean.dtype == torch.float64
    il.save_checkpoint(tmp_path / "d.safetensors", model)
    fresh = make(1, 1)
    il.load_checkpoint(tmp_path / "d.safetensors", fresh)
    assert fresh[0].alphas.dtype == fresh[0].live_alpha.dtype == torch.float64
    assert all(bn.running_mean.dtype == torch.float64 for bn in fresh[1].bns)
    for t in range(2):
        il.set_task(model, t), il.set_task(fresh, t)
        assert torch.equal(model(x), fresh(x))


def test_an_optimizer_made_before_loading_trains_the_loaded_model(tmp_path):
    saved = small("impress", seed=1, tasks=2)
    il.save_checkpoint(tmp_path / "o.safetensors", saved)
    model = small("impress", seed=1, tasks=1)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    il.load_checkpoint(tmp_path / "o.safetensors", model)
    il.set_task(model, 1)
    before = model[0].task_alpha(1).detach().clone()
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    opt.step()
    assert not torch.equal(model[0].task_alpha(1), before)  # the slot the optimizer holds is the model's


def test_what_a_checkpoint_cannot_hold_is_refused_not_dropped(tmp_path):
    class Memo(layers.TaskAware):  # per-task state of a kind no checkpoint entry holds
        def __init__(self):
            super().__init__()
            self._init_tasks()
            self.notes = [0.0]

        num_tasks = property(lambda self: len(self.notes))

    model = nn.Sequential(supermask_lenet(), Memo())
    with pytest.raises(ValueError, match=r"cannot save 1 \(Memo\)"):
        il.save_checkpoint(tmp_path / "m.safetensors", model)
    clash = nn.Module()  # a task layer named "state" beside the model's own buffer "masks"
    clash.state = il.convert(nn.Sequential(nn.Linear(3, 2)), "supermask")[0]
    clash.register_buffer("masks", torch.zeros(1))  # its entry would be 'state.masks' too
    with pytest.raises(ValueError, match="'state.masks' is also a task layer's entry"):
        il.save_checkpoint(tmp_path / "c.safetensors", clash)
    assert not (tmp_path / "m.safetensors").exists() and not (tmp_path / "c.safetensors").exists()


def finished_supsup(tasks=3, seed=0):
    model = supermask_lenet(seed=seed, tasks=tasks)
    with torch.no_grad():
        for t in range(tasks):
            for _, m in layers.task_modules(model):
                m.task_floats(t).normal_(generator=torch.Generator().manual_seed(10 * t + 1))
    for t in range(tasks - 1):  # the last task stays open: its scores travel with the file
        il.finish_task(model, t)
    return model


def test_a_cold_file_loads_back_the_same_tasks_in_under_half_the_bytes(tmp_path):
    model = finished_supsup()
    hot, cold = tmp_path / "hot.safetensors", tmp_path / "cold.safetensors"
    il.save_checkpoint(hot, model)
    il.save_checkpoint(cold, model, cold=True)
    header, tensors = checkpoint.read_checkpoint(cold)
    assert set(header["coded"]) == {"1.masks", "3.masks", "5.masks"} and "1.masks" in tensors  # decoded on reading
    fresh = supermask_lenet(tasks=1)
    il.load_checkpoint(cold, fresh)
    for (_, a), (_, b) in zip(layers.task_modules(model), layers.task_modules(fresh)):
        assert a.export_masks() == b.export_masks() and a.finished == b.finished
    x = torch.randn(4, 784)
    with torch.no_grad():
        torch.testing.assert_close(outputs(fresh, x, 3), outputs(model, x, 3), rtol=0, atol=0)
    # the masks (density 0.1) coded: about 0.47 bit a weight instead of 1; the open task's scores stay floats
    masks_hot = sum(t.numel() * 4 for k, t in checkpoint.read_checkpoint(hot)[1].items() if k.endswith(".masks"))
    masks_cold = os.path.getsize(cold) - (os.path.getsize(hot) - masks_hot)
    assert masks_cold < 0.5 * masks_hot


def test_cold_files_of_every_packed_kind(tmp_path):
    """An Impress model's basis and a kernel-mask model's bits are coded too, and load back exactly."""
    from impresslearn.methods import ksm

    impress = il.convert(models.lenet_300_100(), "impress", basis_size=3, per_channel=True, num_tasks=2, seed=4)
    il.save_checkpoint(tmp_path / "i.safetensors", impress, cold=True)
    fresh = il.convert(models.lenet_300_100(), "impress", basis_size=1, seed=4)
    il.load_checkpoint(tmp_path / "i.safetensors", fresh)
    assert all(
        torch.equal(a.basis_words, b.basis_words)
        for (_, a), (_, b) in zip(layers.impress_layers(impress), layers.impress_layers(fresh))
    )
    torch.manual_seed(0)
    net = models.mnist_convnet(10, (4, 8, 8))
    kmodel = ksm.build_model("ksm", net, 2)
    with torch.no_grad():
        for _, layer in ksm.kernel_mask_layers(kmodel):
            layer.task_floats(1).normal_()
    ksm.finish_task(kmodel, "ksm", 1)
    il.save_checkpoint(tmp_path / "k.safetensors", kmodel, cold=True)
    again = ksm.build_model("ksm", net, 2)
    il.load_checkpoint(tmp_path / "k.safetensors", again)
    x = torch.randn(3, 784)
    for t in (0, 1):
        il.set_task(kmodel, t), il.set_task(again, t)
        assert torch.equal(kmodel.eval()(x), again.eval()(x))


def test_a_damaged_cold_file_is_one_sentence(tmp_path):
    """A cold file whose checksums hold but whose coded lengths do not add up (written so on
    purpose): refused in one sentence, the model untouched."""
    model = finished_supsup(tasks=2)
    path = tmp_path / "cold.safetensors"
    il.save_checkpoint(path, model, cold=True)
    data = path.read_bytes()
    stored = tensors_of(data)
    stored["1.masks.coded_lengths"] = stored["1.masks.coded_lengths"] + 1
    path.write_bytes(rewrite(data, checkpoint.META_KEY, tensors=stored))
    fresh = supermask_lenet(tasks=1)
    before = [m.export_masks() for _, m in layers.task_modules(fresh)]
    with pytest.raises(checkpoint.CheckpointError, match=r"is damaged: its coded entry '1.masks' does not decode"):
        il.load_checkpoint(path, fresh)
    assert [m.export_masks() for _, m in layers.task_modules(fresh)] == before


def quantised_impress(bits=4, scale="layer", tasks=3):
    """LeNet over a K=5 per-channel basis with quantised alphas: every task but the last finished
    (random alphas made quantised by finishing), the last open with its floats."""
    model = il.convert(models.lenet_300_100(), "impress", basis_size=5, per_channel=True, num_tasks=tasks, seed=2)
    for _, m in layers.impress_layers(model):
        m.alpha_quant = layers.AlphaQuant(bits, scale)
    with torch.no_grad():
        for t in range(tasks):
            for _, m in layers.impress_layers(model):
                m.task_floats(t).normal_(0.2, 0.1, generator=torch.Generator().manual_seed(t + 7))
    for t in range(tasks - 1):
        il.finish_task(model, t)
    return model


@pytest.mark.parametrize("bits,scale", [(4, "layer"), (3, "row"), (8, "layer")])
def test_a_cold_file_keeps_quantised_alphas_as_coded_codes(tmp_path, bits, scale):
    """A quantised layer's finished alphas are stored as range-coded codes and float16 scales,
    and load back bit for bit; the open task's floats travel as they are."""
    model = quantised_impress(bits, scale)
    hot, cold = tmp_path / "hot.safetensors", tmp_path / "cold.safetensors"
    il.save_checkpoint(hot, model)
    il.save_checkpoint(cold, model, cold=True)
    header, _ = checkpoint.read_checkpoint(cold)
    assert set(header["coded_alphas"]) == {"1.alpha", "3.alpha", "5.alpha"}
    raw = tensors_of(cold.read_bytes())
    assert "1.alpha" not in raw and raw["1.alpha.open"].shape == (1, 5, 300)  # only the open task's floats
    fresh = il.convert(models.lenet_300_100(), "impress", basis_size=1, seed=2)
    il.load_checkpoint(cold, fresh)
    for (_, a), (_, b) in zip(layers.impress_layers(model), layers.impress_layers(fresh)):
        assert b.alpha_quant == a.alpha_quant and b.finished == a.finished
        for t in range(3):
            assert torch.equal(a.task_alpha(t).detach(), b.task_alpha(t).detach())
    # the finished alphas cost what coded_bytes counts, and less than 4 bytes each
    coded = sum(raw[f"{k}.alpha.coded"].numel() + 2 * raw[f"{k}.alpha.scales"].numel() for k in (1, 3, 5))
    counted = sum(
        layers.coded_bytes(m.task_alpha(t).detach(), m.alpha_quant) for _, m in layers.impress_layers(model) for t in (0, 1)
    )
    assert coded == counted and coded < 2 * 4 * (5 * 410) * bits / 32 + 2 * 2 * (410 if scale == "row" else 3)


def test_damaged_coded_alphas_are_one_sentence(tmp_path):
    model = quantised_impress()
    path = tmp_path / "cold.safetensors"
    il.save_checkpoint(path, model, cold=True)
    data = path.read_bytes()
    for key, change in (
        ("3.alpha.coded_lengths", lambda v: v + 1),
        ("3.alpha.scales", lambda v: v[:1]),
        ("3.alpha.open", lambda v: v[:, :2]),
    ):
        stored = tensors_of(data)
        stored[key] = change(stored[key])
        path.write_bytes(rewrite(data, checkpoint.META_KEY, tensors=stored))
        fresh = il.convert(models.lenet_300_100(), "impress", basis_size=1, seed=2)
        with pytest.raises(checkpoint.CheckpointError, match=r"is damaged: its coded alphas '3.alpha'"):
            il.load_checkpoint(path, fresh)
        assert all(m.basis_size == 1 for _, m in layers.impress_layers(fresh))
