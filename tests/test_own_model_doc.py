"""docs/own-model.md runs as written: a torchvision ViT converted, trained with a plain loop and one
optimizer, an ImpressLearn task and a hybrid one over its masks, task inference, and a checkpoint of
a model in mid-training loaded into a fresh conversion; its own asserts check each step."""

from tutorial_blocks import OWN_MODEL, blocks, run


def test_the_page_has_its_sections():
    assert len(blocks(OWN_MODEL)) == 7


def test_every_block_of_the_page_runs(tmp_path):
    ns = run(tmp_path, OWN_MODEL)
    assert (tmp_path / "vit.safetensors").exists()
    assert min(ns["acc"].values()) > 0.5, ns["acc"]
    assert all(ns["found"]["SupSup", "exhaustive"])
