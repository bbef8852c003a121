"""serve(): a stream of requests, each with a task or none, answered in batches mixed across
tasks, in order; and the serving example end to end."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from continual_helpers import TASKS, permuted, trained

from impresslearn import set_task
from impresslearn.continual import inference
from impresslearn.continual.serving import serve

ROOT = Path(__file__).resolve().parents[1]


def test_serve_answers_every_request_in_order_under_its_task():
    _, model = trained("threshold")
    model.eval()
    x = torch.cat([next(iter(permuted().test(t, 20)))[0] for t in TASKS])  # 60 images, 20 per task
    truth = torch.arange(len(TASKS)).repeat_interleave(20)
    order = torch.randperm(60, generator=torch.Generator().manual_seed(0))
    requests = [(x[i], None if k % 3 == 0 else int(truth[i])) for k, i in enumerate(order.tolist())]
    batches = []
    answers = list(serve(model, requests, batch_size=16, on_batch=batches.append))
    assert [a.index for a in answers] == list(range(60)) and batches == [16, 16, 16, 12]
    xs = x[order]
    own = []
    for t in range(len(TASKS)):
        set_task(model, t)
        with torch.no_grad():
            own.append(model(xs))
    for k, a in enumerate(answers):
        assert a.inferred == (requests[k][1] is None)
        if not a.inferred:
            assert a.task == requests[k][1]
        torch.testing.assert_close(a.output, own[a.task][k], rtol=1e-5, atol=1e-5)
    # the inferred tasks are exhaustive inference's per sample, batch by batch
    unknown = [k for k, r in enumerate(requests) if r[1] is None]
    expected = []
    for b in range(0, 60, 16):
        rows = [k for k in unknown if b <= k < b + 16]
        expected += inference.infer_sample_tasks(model, xs[rows], method="exhaustive").tolist()
    assert [answers[k].task for k in unknown] == expected
    found = sum(answers[k].task == int(truth[order[k]]) for k in unknown)
    assert found >= 0.9 * len(unknown)


def test_bad_requests_are_refused_in_a_sentence():
    _, model = trained("threshold")
    x = torch.zeros(1, 28, 28)
    with pytest.raises(ValueError, match=r"a request's task must be an int in \[0, 3\) or None, got 5"):
        list(serve(model, [(x, 5)]))
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        list(serve(model, [(x, 0)], batch_size=0))


def test_the_serving_example_runs():
    cmd = [sys.executable, str(ROOT / "examples" / "serve_tasks.py"), "--requests", "300", "--epochs", "0.2"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "300 requests over 3 tasks in batches of 128" in done.stdout and "requests/s" in done.stdout
