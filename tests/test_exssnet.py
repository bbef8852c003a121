"""ExSSNeT, SSNeT and KKT (impresslearn.methods.exssnet): weights under earlier masks never move,
earlier tasks keep their accuracy exactly, SSNeT does move them, KKT finds a similar task, the
storage count, the checkpoint round trip, and the command line's --methods."""

import json

import pytest
import torch
from continual_helpers import subset
from test_faults import refused

from impresslearn import cli
from impresslearn.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from impresslearn.continual import metrics, storage
from impresslearn.continual.backbone import BackboneConfig, supermask_model, weight_shapes
from impresslearn.continual.training import TrainConfig
from impresslearn.data import PermutedMNIST, SplitMNIST, load_subset
from impresslearn.layers import supermask_layers
from impresslearn.methods.exssnet import ExSSNeT, ExssnetConfig, knn_accuracy, used_from_masks

MASK = TrainConfig(optimizer="adam", lr=0.01, epochs=1.0, iterations=15, batch_size=128)
WEIGHT = TrainConfig(optimizer="adam", lr=1e-3, epochs=1.0, iterations=15, batch_size=128)


def stream():
    return PermutedMNIST(subset(), num_tasks=4)


def learn(method, tasks=3, density=0.05, after=None, **kw):
    """A model whose task i is learned on permutation i by `method`; `after(i, model, learner)`
    runs after each task."""
    torch.manual_seed(0)
    model = supermask_model(BackboneConfig(density=density), num_tasks=tasks)
    learner = ExSSNeT(model, ExssnetConfig(method=method, mask=MASK, weight=WEIGHT, **kw))
    for i in range(tasks):
        learner.learn(i, stream().train(i, 128, seed=i), progress=False)
        if after is not None:
            after(i, model, learner)
    return model, learner


def weights(model):
    return {n: m.weight.detach().clone() for n, m in supermask_layers(model)}


def accuracies(model, tasks):
    return [metrics.accuracy(model, stream().test(t, 500), task=t) for t in range(tasks)]


def test_weights_under_used_are_bit_identical_across_later_weight_phases():
    snaps = []
    model, learner = learn(
        "exssnet", after=lambda i, m, ln: snaps.append((weights(m), {n: u.clone() for n, u in ln.used.items()}))
    )
    for i in range(len(snaps) - 1):
        w_i, used_i = snaps[i]
        for later, _ in snaps[i + 1 :]:
            for n in w_i:
                assert torch.equal(w_i[n][used_i[n]].view(torch.int32), later[n][used_i[n]].view(torch.int32))
    # and the later weight phases did change something (outside the earlier masks)
    w0, used0 = snaps[0]
    last = snaps[-1][0]
    assert any(not torch.equal(w0[n][~used0[n]], last[n][~used0[n]]) for n in w0)


def test_earlier_tasks_keep_their_accuracy_exactly():
    rows = []
    model, _ = learn("exssnet", after=lambda i, m, ln: rows.append(accuracies(m, i + 1)))
    for i, row in enumerate(rows):
        for j, a in enumerate(row):
            assert a == rows[j][j], (i, j)  # BWT exactly 0


def test_ssnet_changes_earlier_weights():
    snaps = []
    model, _ = learn(
        "ssnet", tasks=2, after=lambda i, m, ln: snaps.append((weights(m), {n: u.clone() for n, u in ln.used.items()}))
    )
    (w0, used0), (w1, _) = snaps
    assert any(not torch.equal(w0[n][used0[n]], w1[n][used0[n]]) for n in w0)


def test_supsup_never_changes_weights():
    before = weights(supermask_model(BackboneConfig(density=0.05), num_tasks=2))
    model, _ = learn("supsup", tasks=2)
    assert all(torch.equal(before[n], w) for n, w in weights(model).items())


def test_knn_accuracy_on_separable_features():
    torch.manual_seed(0)
    y = torch.arange(200) % 2
    x = torch.randn(200, 5) * 0.1 + y[:, None].float() * 3
    assert knn_accuracy(x, y, k=15, fit_fraction=0.66, classes=2) == 1.0
    assert knn_accuracy(torch.zeros(200, 5), y, k=15, fit_fraction=0.66, classes=2) <= 0.6


def test_kkt_picks_the_similar_task_and_starts_from_its_mask():
    # tasks 0 and 2 are the same permutation, task 1 another: task 2 should start from task 0
    torch.manual_seed(0)
    perm = PermutedMNIST(subset(), num_tasks=2)
    order = [0, 1, 0]
    model = supermask_model(BackboneConfig(density=0.1), num_tasks=3)
    cfg = ExssnetConfig(method="exssnet-kkt", mask=MASK, weight=WEIGHT, kkt_k=20, kkt_fraction=1.0)
    learner = ExSSNeT(model, cfg)
    infos = [learner.learn(i, perm.train(t, 128, seed=i), progress=False) for i, t in enumerate(order[:2])]
    mask0 = [m.export_masks([0]) for _, m in supermask_layers(model)]
    # snapshot before task 2 is learned: the source's finished mask must not change
    info = learner.learn(2, perm.train(0, 128, seed=2), progress=False)
    assert "kkt" not in infos[0] and infos[1]["kkt"]["source"] == 0  # only one earlier task: beats chance
    kkt = info["kkt"]
    assert kkt["source"] == 0 and kkt["knn_acc"][0] > kkt["knn_acc"][1], kkt
    assert all(a == m.export_masks([0]) for a, (_, m) in zip(mask0, supermask_layers(model)))


def test_storage_counts_the_new_entries():
    model, learner = learn("exssnet", tasks=2)
    shapes = weight_shapes(model)
    used = used_from_masks(model)
    assert all(torch.equal(used[n], learner.used[n]) for n in used)
    per_task = storage.exssnet_bytes(shapes, [10, 3])
    mask = storage.supsup_bytes_packed(shapes)
    assert per_task == [mask + 40, mask + 12]
    assert mask == 34_160  # LeNet-300-100, 10 outputs, 1 bit per weight


def test_checkpoint_round_trip_is_exact(tmp_path):
    model, _ = learn("exssnet", tasks=2)
    path = tmp_path / "ex.safetensors"
    save_checkpoint(path, model)  # masks only: the seed alone gives the untrained backbone
    seed_only = supermask_model(BackboneConfig(density=0.05))
    load_checkpoint(path, seed_only)
    assert not all(
        torch.equal(a.weight, b.weight) for (_, a), (_, b) in zip(supermask_layers(model), supermask_layers(seed_only))
    )
    save_checkpoint(path, model, include_trained=True)
    fresh = supermask_model(BackboneConfig(density=0.05))
    load_checkpoint(path, fresh)
    for (_, a), (_, b) in zip(supermask_layers(model), supermask_layers(fresh)):
        assert torch.equal(a.weight, b.weight)
        assert torch.equal(a.export_masks().words, b.export_masks().words)
    assert accuracies(model, 2) == accuracies(fresh, 2)
    # the stored values are the union of the masks, 4 bytes each, beside the seed
    union = sum(int(u.sum()) for u in used_from_masks(model).values())
    _, tensors = read_checkpoint(path)
    assert sum(t.numel() for k, t in tensors.items() if k.endswith(".trained")) == union
    # a weight changed outside every mask cannot be stored beside the seed: refused, nothing written
    layer = supermask_layers(fresh)[0][1]
    outside = (~used_from_masks(fresh)["1"]).nonzero()[0]
    with torch.no_grad():
        layer.weight[tuple(outside)] += 1.0
    with pytest.raises(ValueError, match="include_weights"):
        save_checkpoint(tmp_path / "bad.safetensors", fresh, include_trained=True)
    assert not (tmp_path / "bad.safetensors").exists()


def test_split_mnist_stream():
    s = SplitMNIST(load_subset())
    assert s.num_tasks == 5 and s.describe(2) == "digits 4, 5"
    x, y = next(iter(s.train(3, 64)))
    assert x.shape == (64, 784) and set(y.tolist()) <= {0, 1}
    full = load_subset()
    assert len(s.test(1, 1000).y) == int(((full.test_y == 2) | (full.test_y == 3)).sum())


def test_config_refuses_a_weight_phase_that_would_move_other_entries():
    with pytest.raises(ValueError, match="Adam without weight decay"):
        ExssnetConfig(weight=TrainConfig(optimizer="adam", weight_decay=1e-4))
    with pytest.raises(ValueError, match="method"):
        ExssnetConfig(method="packnet")


TINY = ["run", "--benchmark", "split-mnist", "--new-tasks", "2", "--mask-iterations", "5", "--quiet"]


def test_methods_run_writes_a_key_per_method(tmp_path):
    out = tmp_path / "r.json"
    assert cli.main(TINY + ["--methods", "supsup,exssnet,exssnet-kkt", "--kkt-k", "10", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["status"] == "done" and r["methods"] == ["supsup", "exssnet", "exssnet-kkt"]
    for key in ("supsup", "exssnet", "exssnet_kkt"):
        m = r[key]
        assert len(m["task_acc"]) == 2 and len(m["bytes_per_task"]) == 2 and len(m["seconds_per_task"]) == 2
        assert m["acc_matrix"]["matrix"][1][0] == m["task_acc"][0] and m["checkpoint"]["exact"]
        assert m["bwt"] == 0.0
    assert r["supsup"]["bytes_per_task"] == [r["supsup"]["mask_bytes_per_task"]] * 2
    ex = r["exssnet"]
    assert ex["bytes_per_task"][0] == ex["mask_bytes_per_task"] + 4 * ex["new_entries"][0]
    assert ex["changed_entries"] <= sum(ex["new_entries"])
    # the smallest exact form: the trained weights beside the mask coded for cold storage
    for m in (r["supsup"], ex):
        assert all(s < b for s, b in zip(m["smallest_bytes_per_task"], m["bytes_per_task"]))
    assert cli.main(["table", str(out)]) == 0
    assert cli.main(["table", "--grid", str(out), str(out)]) == 0
    assert cli.main(["table", "--storage", str(out)]) == 0
    assert cli.main(["table", "--early", str(out)]) == 0


def test_methods_refusals(tmp_path, capsys):
    out = ["--out", str(tmp_path / "r.json")]
    refused(capsys, TINY + ["--methods", "supsup,packnet"] + out, "--methods: invalid choice 'packnet'")
    refused(capsys, TINY + out, "split-mnist has no basis tasks: ImpressLearn there takes --basis random")
    refused(capsys, TINY + ["--methods", "exssnet", "--new-tasks", "6"] + out, "at most 5")
    refused(capsys, TINY + ["--methods", "exssnet", "--kkt-fraction", "2"] + out, "kkt_fraction|--kkt-fraction")
    refused(capsys, ["run", "--weight-lr", "0.1", "--quiet"] + out, "--methods")
    refused(capsys, TINY + ["--methods", "exssnet", "--mask", "threshold"] + out, "top-k")
