"""docs/tutorial.md runs as written: every Python block, in order, in one session; its own
asserts check the accuracies, the reload and the task inference; the plot it shows is written."""

from tutorial_blocks import blocks, run


def test_the_tutorial_has_its_sections():
    assert len(blocks()) == 6


def test_every_block_of_the_tutorial_runs(tmp_path):
    ns = run(tmp_path)
    assert (tmp_path / "tutorial-accuracy.png").stat().st_size > 1000
    assert (tmp_path / "impress.safetensors").exists()
    assert len(ns["acc"]) == 3 and all(sum(v) >= len(v) - 1 for v in ns["found"].values())
