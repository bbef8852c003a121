"""The Avalanche adapter (impresslearn.avalanche) on a tiny task-incremental stream: two or three
pixel permutations of a few hundred images of the MNIST subset that ships with the package.

CI installs the avalanche extra (.ci/run); without avalanche-lib the module is skipped."""

import copy

import pytest
import torch

pytest.importorskip("avalanche", reason='avalanche-lib is not installed (pip install -e ".[avalanche]")')

from avalanche.benchmarks import tensors_benchmark  # noqa: E402
from avalanche.core import SupervisedPlugin  # noqa: E402

import impresslearn as il  # noqa: E402
from impresslearn import models  # noqa: E402
from impresslearn.avalanche import (  # noqa: E402
    ExSSNeT,
    ImpressLearn,
    MaskModule,
    MaskStrategy,
    Phase,
    SSNeT,
    SupSup,
    TaskInference,
    TaskTrainingPlugin,
    split_mnist,
    superposition,
)
from impresslearn.continual import TrainConfig  # noqa: E402
from impresslearn.data import load_subset  # noqa: E402
from impresslearn.methods.exssnet import current_masks  # noqa: E402

N_TRAIN, N_TEST = 300, 100
FAST = TrainConfig(optimizer="rmsprop", lr=3e-4, epochs=5, batch_size=32)  # 50 steps: ~75 % on 100 test images
ALPHAS = TrainConfig(optimizer="adam", lr=5e-2, epochs=2, batch_size=32)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def stream(tasks: int):
    """`tasks` experiences, each its own pixel permutation (task 0: none) and task label."""
    mnist = load_subset()
    gen = torch.Generator().manual_seed(0)
    perms = [torch.arange(784)] + [torch.randperm(784, generator=gen) for _ in range(tasks - 1)]

    def flat(x):
        return (x.reshape(x.shape[0], -1).float() / 255.0 - 0.1307) / 0.3081

    train_x, test_x = flat(mnist.train_x[:N_TRAIN]), flat(mnist.test_x[:N_TEST])
    train_y, test_y = mnist.train_y[:N_TRAIN], mnist.test_y[:N_TEST]
    return tensors_benchmark(
        train_tensors=[(train_x[:, p], train_y) for p in perms],
        test_tensors=[(test_x[:, p], test_y) for p in perms],
        task_labels=list(range(tasks)),
    )


def supermask_net(outputs: int = 10):
    return il.convert(
        models.lenet_300_100(num_outputs=outputs), "supermask", density=0.1, init="signed_constant", scale=True, seed=0
    )


def outputs_of(module: MaskModule, x, label: int):
    module.eval()
    with torch.no_grad():
        return module(x, torch.full((x.shape[0],), label)).clone()


def test_wrapper_adds_a_task_per_label_and_selects_it():
    bm = stream(2)
    module = MaskModule(supermask_net())
    module.train()
    for exp in bm.train_stream:
        module.adaptation(exp)
    assert module.task_of == {0: 0, 1: 1} and module.num_tasks == 2
    x = bm.test_stream[1].dataset[0][0].unsqueeze(0).repeat(4, 1)
    module.eval()
    with torch.no_grad():
        il.set_task(module.net, 1)
        direct = module.net(x)
        assert torch.equal(module.forward_single_task(x, 1), direct)
        assert torch.equal(module(x, torch.ones(4, dtype=torch.long)), direct)
        il.set_task(module.net, 0)
        first = module.net(x)
        mixed = module(x, torch.tensor([0, 1, 0, 1]))  # split by task: smaller matmuls, other rounding
        torch.testing.assert_close(mixed[1::2], direct[1::2])
        torch.testing.assert_close(mixed[::2], first[::2])
        # a label not trained yet has no mask: zero logits (Avalanche evaluates the whole stream)
        assert torch.equal(module.forward_single_task(x, 7), torch.zeros_like(direct))
    with pytest.raises(ValueError, match="convert"):
        MaskModule(models.lenet_300_100())


def test_supsup_freezes_earlier_tasks_bit_identically():
    bm = stream(3)
    strategy = SupSup(model=supermask_net(), masks=FAST)
    x0 = torch.stack([bm.test_stream[0].dataset[i][0] for i in range(50)])
    strategy.train(bm.train_stream[0])
    before = outputs_of(strategy.model, x0, 0)
    layers_of = lambda: il.layers.supermask_layers(strategy.model.net)  # noqa: E731
    assert all(m.is_finished(0) for _, m in layers_of())  # a frozen task is finished: packed bits only
    masks0 = [m.export_masks([0]) for _, m in layers_of()]
    for exp in bm.train_stream[1:]:
        strategy.train(exp)
    assert torch.equal(outputs_of(strategy.model, x0, 0), before)
    assert all(a == m.export_masks([0]) for a, (_, m) in zip(masks0, layers_of()))
    assert strategy.model.frozen == {0, 1, 2}
    # each later task did learn: its mask moved from its initial scores' mask
    fresh = supermask_net()
    il.add_task(fresh)
    assert layers_of()[0][1].export_masks([1]) != il.layers.supermask_layers(fresh)[0][1].export_masks([1])


def test_a_frozen_label_cannot_train_again():
    bm = stream(1)
    strategy = SupSup(model=supermask_net(), masks=FAST)
    strategy.train(bm.train_stream[0])
    with pytest.raises(ValueError, match="frozen"):
        strategy.train(bm.train_stream[0])


def test_impresslearn_learns_alphas_after_the_basis_and_keeps_every_task():
    bm = stream(3)
    strategy = ImpressLearn(model=supermask_net(), basis_size=2, masks=FAST, alphas=ALPHAS)
    xs = [torch.stack([bm.test_stream[t].dataset[i][0] for i in range(50)]) for t in range(3)]
    for exp in bm.train_stream[:2]:
        strategy.train(exp)
    masks_out = [outputs_of(strategy.model, xs[t], t) for t in range(2)]
    strategy.train(bm.train_stream[2])
    net = strategy.model.net
    assert il.layers.impress_layers(net) and not il.layers.supermask_layers(net)
    # the basis tasks compute with their own masks still (one-hot alphas over them)
    for t in range(2):
        torch.testing.assert_close(outputs_of(strategy.model, xs[t], t), masks_out[t], rtol=1e-5, atol=1e-5)
    # the new task learnt alphas only: K = 2 per layer, 3 layers, kept as finished rows
    learnt = [m.task_alpha(2) for _, m in il.layers.impress_layers(net)]
    assert all(m.is_finished(2) for _, m in il.layers.impress_layers(net))
    assert [tuple(p.shape) for p in learnt] == [(2,)] * 3
    assert not all(torch.equal(p, torch.full_like(p, 0.5)) for p in learnt)
    after = [outputs_of(strategy.model, xs[t], t) for t in range(3)]
    # a fourth experience leaves all three bit-identical
    bm4 = stream(4)
    strategy.train(bm4.train_stream[3])
    for t in range(3):
        assert torch.equal(outputs_of(strategy.model, xs[t], t), after[t])


def test_task_labels_none_infers_the_task():
    bm = stream(2)
    strategy = SupSup(model=supermask_net(), masks=FAST)
    for exp in bm.train_stream:
        strategy.train(exp)
    module = strategy.model
    module.eval()
    found = 0
    for t in range(2):
        x = torch.stack([bm.test_stream[t].dataset[i][0] for i in range(64)])
        with torch.no_grad():
            out = module(x, None)
        guess = int(module.infer(x)[0])
        found += guess == t
        assert torch.equal(out, outputs_of(module, x, guess))
    assert found == 2
    # infer_tasks: evaluation ignores the labels it is given
    module.infer_tasks = True
    with torch.no_grad():
        assert torch.equal(module(x, torch.zeros(x.shape[0], dtype=torch.long)), module(x, None))
    module.infer_tasks = False
    # one-shot over the masks' superposition, and per sample
    for inference in (TaskInference(method="oneshot"), TaskInference(per_sample=True)):
        module.inference = inference
        module.changed()
        x = torch.stack([bm.test_stream[1].dataset[i][0] for i in range(32)])
        assert module.infer(x).shape == (32,)
    with pytest.raises(ValueError, match="binary"):
        TaskInference(method="binary", per_sample=True)


def test_superposition_keeps_each_mask():
    net = supermask_net()
    il.add_task(net)
    x = torch.randn(5, 784)
    for per_channel in (False, True):
        twin = superposition(net, per_channel=per_channel)
        assert il.layers.impress_layers(twin)[0][1].task_alpha(0).dim() == (2 if per_channel else 1)
        for t in range(2):
            il.set_task(net, t)
            il.set_task(twin, t)
            with torch.no_grad():
                torch.testing.assert_close(twin(x), net(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="SupSup"):
        superposition(copy.deepcopy(twin))


def test_strategy_end_to_end_with_avalanche_metrics():
    bm = stream(2)
    strategy = ImpressLearn(model=supermask_net(), basis_size=1, masks=FAST, alphas=ALPHAS)
    for exp in bm.train_stream:
        strategy.train(exp)
        strategy.eval(bm.test_stream)
    metrics = strategy.evaluator.get_last_metrics()
    accs = [metrics[f"Top1_Acc_Exp/eval_phase/test_stream/Task{t:03d}/Exp{t:03d}"] for t in range(2)]
    # the mask learnt (10 classes: chance is 0.1); the alphas over one mask of another
    # permutation are 3 numbers and may stay near chance
    assert accs[0] > 0.4 and 0.0 <= accs[1] <= 1.0, accs
    matrix = metrics["EvalStream/Acc_Matrix"]
    assert tuple(matrix.shape) == (2, 2)
    assert float(matrix[1, 0]) == pytest.approx(float(matrix[0, 0]), abs=1e-6)  # nothing forgotten
    assert metrics["StreamForgetting/eval_phase/test_stream"] == pytest.approx(0.0, abs=1e-6)
    assert "StreamBWT/eval_phase/test_stream" in metrics


def test_refused_settings_say_why():
    with pytest.raises(ValueError, match="whole epochs"):
        SupSup(model=supermask_net(), masks=TrainConfig(epochs=1.5))
    with pytest.raises(ValueError, match="supermask"):
        SupSup(model=il.convert(models.lenet_300_100(), "impress", basis_size=2))
    with pytest.raises(ValueError, match="basis_size"):
        ImpressLearn(model=supermask_net(), basis_size=0)


def test_a_method_with_two_phases_is_one_small_class():
    """How ExSSNeT (a mask phase, then a weight phase) plugs in: a plugin listing its phases and
    a strategy passing it."""
    calls = []
    one = TrainConfig(optimizer="rmsprop", lr=3e-4, epochs=1, batch_size=32)

    class TwoPhases(TaskTrainingPlugin):
        def phases(self, model, task):
            params = model.task_parameters(task)
            return [
                Phase("all", params, one, start=lambda: calls.append("start all"), stop=lambda: calls.append("stop all")),
                Phase("last", params[-1:], one, start=lambda: calls.append("start last"), stop=lambda: calls.append("stop last")),
            ]

    class TwoPhaseStrategy(MaskStrategy):
        def __init__(self, *, model, **kwargs):
            super().__init__(model=model, plugin=TwoPhases(lambda net: il.methods.SupSup(net, one)), **kwargs)

    strategy = TwoPhaseStrategy(model=supermask_net())
    layers_of = lambda: il.layers.supermask_layers(strategy.model.net)  # noqa: E731
    first = [m.export_masks([0]) for _, m in layers_of()]
    seen = []

    class Watch(SupervisedPlugin):
        def after_training_epoch(self, strategy, **kwargs):
            seen.append([p for g in strategy.optimizer.param_groups for p in g["params"]])

    strategy.plugins.append(Watch())
    strategy.train(stream(1).train_stream[0])
    assert calls == ["start all", "stop all", "start last", "stop last"] and strategy.train_epochs == 2
    last = layers_of()[-1][1].live_scores  # the last layer's slot, which held task 0's scores
    # Watch runs after the switch at the end of epoch 1: the second phase's optimizer holds the last layer only
    assert len(seen[0]) == 1 and seen[0][0] is last
    assert all(m.is_finished(0) and a != m.export_masks([0]) for a, (_, m) in zip(first, layers_of()))


# ExSSNeT: a short mask phase and a weight phase with a rate large enough to move the weights
EX_MASKS = TrainConfig(optimizer="rmsprop", lr=3e-4, epochs=2, batch_size=32)
EX_WEIGHTS = TrainConfig(optimizer="adam", lr=1e-3, epochs=1, batch_size=32)


def weights_of(module: MaskModule) -> dict:
    return {n: m.weight.detach().clone() for n, m in il.layers.supermask_layers(module.net)}


def test_exssnet_keeps_earlier_tasks_bit_identical_and_trains_exclusive_weights():
    bm = stream(3)
    strategy = ExSSNeT(model=supermask_net(), masks=EX_MASKS, weights=EX_WEIGHTS)
    module = strategy.model
    xs = [torch.stack([bm.test_stream[t].dataset[i][0] for i in range(50)]) for t in range(3)]
    seed_weights = weights_of(module)
    strategy.train(bm.train_stream[0])
    # the first task's weight phase moved weights of its mask (nothing is used yet), and no other
    w0, m0 = weights_of(module), current_masks(module.net, 0)
    for n in w0:
        assert not torch.equal(w0[n][m0[n]], seed_weights[n][m0[n]]), n
        assert torch.equal(w0[n][~m0[n]], seed_weights[n][~m0[n]]), n
    out0 = outputs_of(module, xs[0], 0)
    strategy.train(bm.train_stream[1])
    w1, m1 = weights_of(module), current_masks(module.net, 1)
    exclusive = {n: m1[n] & ~m0[n] for n in m1}
    assert strategy.task_plugin.trained_entries[1] == sum(int(e.sum()) for e in exclusive.values())
    for n in w1:
        assert (m1[n] & m0[n]).any(), n  # the masks share weights: the restriction is what keeps task 0
        assert torch.equal(w1[n][~exclusive[n]], w0[n][~exclusive[n]]), n  # task 0's weights among them
        assert not torch.equal(w1[n][exclusive[n]], w0[n][exclusive[n]]), n
    out1 = outputs_of(module, xs[1], 1)
    strategy.train(bm.train_stream[2])
    # every earlier task: its mask, the weights under it and its outputs, bit for bit
    for t, out in ((0, out0), (1, out1)):
        assert torch.equal(outputs_of(module, xs[t], t), out), t
    assert all(torch.equal(a, b) for a, b in zip(current_masks(module.net, 0).values(), m0.values()))
    w2 = weights_of(module)
    assert all(torch.equal(w2[n][m0[n] | m1[n]], w1[n][m0[n] | m1[n]]) for n in w2)
    # the phases leave the backbone frozen, with no hook on it
    assert all(
        not w.requires_grad and w.grad is None and not w._backward_hooks
        for w in (m.weight for _, m in il.layers.supermask_layers(module.net))
    )


def test_ssnet_trains_the_whole_mask_and_may_change_earlier_tasks():
    bm = stream(2)
    strategy = SSNeT(model=supermask_net(), masks=EX_MASKS, weights=EX_WEIGHTS)
    module = strategy.model
    x0 = torch.stack([bm.test_stream[0].dataset[i][0] for i in range(50)])
    strategy.train(bm.train_stream[0])
    w0, m0, out0 = weights_of(module), current_masks(module.net, 0), outputs_of(module, x0, 0)
    strategy.train(bm.train_stream[1])
    w1, m1 = weights_of(module), current_masks(module.net, 1)
    assert strategy.task_plugin.trained_entries[1] == sum(int(m.sum()) for m in m1.values())
    shared = {n: m0[n] & m1[n] for n in m0}
    assert any(not torch.equal(w1[n][shared[n]], w0[n][shared[n]]) for n in w1)  # task 0's weights moved
    assert all(torch.equal(w1[n][~m1[n]], w0[n][~m1[n]]) for n in w1)  # but none outside the new mask
    assert not torch.equal(outputs_of(module, x0, 0), out0)


def test_exssnet_end_to_end_with_avalanche_metrics():
    bm = stream(2)
    strategy = ExSSNeT(model=supermask_net(), masks=EX_MASKS, weights=EX_WEIGHTS)
    for exp in bm.train_stream:
        strategy.train(exp)
        strategy.eval(bm.test_stream)
    assert strategy.train_epochs == 3  # two mask epochs, one weight epoch
    metrics = strategy.evaluator.get_last_metrics()
    accs = [metrics[f"Top1_Acc_Exp/eval_phase/test_stream/Task{t:03d}/Exp{t:03d}"] for t in range(2)]
    assert all(a > 0.3 for a in accs), accs  # 10 classes: chance is 0.1
    matrix = metrics["EvalStream/Acc_Matrix"]
    assert float(matrix[1, 0]) == float(matrix[0, 0])  # exactly: task 0's outputs are bit-identical
    assert metrics["StreamBWT/eval_phase/test_stream"] == 0.0
    assert metrics["StreamForgetting/eval_phase/test_stream"] == 0.0


def test_exssnet_refuses_what_would_move_other_weights():
    with pytest.raises(ValueError, match="Adam without weight decay"):
        ExSSNeT(model=supermask_net(), weights=TrainConfig(optimizer="sgd", lr=0.1, epochs=1))
    with pytest.raises(ValueError, match="Adam without weight decay"):
        ExSSNeT(model=supermask_net(), weights=TrainConfig(optimizer="adam", lr=1e-3, weight_decay=1e-4, epochs=1))
    with pytest.raises(ValueError, match="supermask"):
        ExSSNeT(model=il.convert(models.lenet_300_100(), "impress", basis_size=2))
    with pytest.raises(ValueError, match="top-k"):
        ExSSNeT(model=il.convert(models.lenet_300_100(), "supermask", mask="threshold", seed=0))
    with pytest.raises(TypeError, match="ExSSNeT"):
        SSNeT(model=supermask_net(), exclusive=True)


def test_split_mnist_reads_local_files_and_shrinks(mnist_root, tmp_path):
    bm = split_mnist(5, mnist_root, train_per_exp=50, test_per_exp=20)
    assert [e.task_labels for e in bm.train_stream] == [[t] for t in range(5)]
    assert [len(e.dataset) for e in bm.train_stream] == [50] * 5 and [len(e.dataset) for e in bm.test_stream] == [20] * 5
    classes = [set(e.classes_in_this_experience) for e in bm.train_stream]
    assert all(len(c) == 2 for c in classes) and set().union(*classes) == set(range(10))
    x, y, t = bm.train_stream[3].dataset[0]
    assert tuple(x.shape) == (1, 28, 28) and int(y) in classes[3] and t == 3
    with pytest.raises(FileNotFoundError, match="MNIST is not under"):
        split_mnist(5, tmp_path)


def test_any_method_by_name_is_a_strategy_with_the_same_learner():
    """`MaskStrategy.of` runs a method's `Learner` (impresslearn.methods) in Avalanche's loop: the
    same phases and finish as the library's own loop, task 0 bit-identical after task 1."""
    bm = stream(2)
    cfg = il.methods.ExssnetConfig(method="ssnet", mask=EX_MASKS, weight=EX_WEIGHTS)
    strategy = MaskStrategy.of("ssnet", model=supermask_net(), config=cfg)
    learner = strategy.task_plugin.learner
    assert isinstance(learner, il.methods.ExSSNeT) and learner.cfg is cfg and strategy.train_mb_size == 32
    strategy.train(bm.train_stream[0])
    assert learner.trained[0] > 0 and learner.new_entries[0] > 0  # the learner's finish ran
    with pytest.raises(ValueError, match="method must be one of"):
        MaskStrategy.of("packnet", model=supermask_net())


def test_a_phase_penalty_and_step_hook_run_in_avalanches_loop():
    one = TrainConfig(optimizer="rmsprop", lr=3e-4, epochs=1, batch_size=32)
    seen = {"penalty": 0, "steps": []}

    def penalty():
        seen["penalty"] += 1
        return torch.zeros(())

    class Hooked(il.methods.SupSup):
        def phases(self, task):
            (phase,) = super().phases(task)
            phase.penalty, phase.after_step = penalty, seen["steps"].append
            return [phase]

    strategy = MaskStrategy(model=supermask_net(), plugin=TaskTrainingPlugin(lambda net: Hooked(net, one)))
    strategy.train(stream(1).train_stream[0])
    batches = -(-N_TRAIN // 32)
    assert seen["penalty"] == batches and seen["steps"] == list(range(1, batches + 1))
