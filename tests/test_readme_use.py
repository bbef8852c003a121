"""The README's "Use" block runs as written on a torchvision ResNet-18, and with the model swapped
for a torchvision ViT: convert, one optimizer over every task, finish, ImpressLearn over the
masks, a checkpoint, task inference."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
RESNET = "torchvision.models.resnet18(num_classes=10)"
VIT = (
    "torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, "
    "mlp_dim=64, num_classes=10)"
)


def use_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Use") :]
    return re.search(r"```python\n(.*?)```", section, flags=re.S)[1]


@pytest.mark.parametrize("model", ["resnet18", "vit"])
def test_the_use_block_runs(model, tmp_path, monkeypatch):
    code = use_block()
    assert RESNET in code
    if model == "vit":
        code = code.replace(RESNET, VIT)
    monkeypatch.chdir(tmp_path)
    ns: dict = {}
    exec(compile(code, f"README.md Use ({model})", "exec"), ns)
    il = ns["il"]
    assert all(m.is_finished(t) for _, m in il.layers.supermask_layers(ns["net"]) for t in range(3))
    assert len(il.task_parameters(ns["new"], 3)) == len(il.layers.impress_layers(ns["new"]))
    assert (tmp_path / "impress.safetensors").stat().st_size > 0
