"""`impresslearn quickstart`: the whole method on the MNIST subset that ships with the package.

Offline, about a minute on a laptop CPU: SupSup masks for 3 basis tasks and 2 new
PermutedMNIST tasks, ImpressLearn (per-layer and per-channel alphas over the 3 basis masks) on
the new tasks, the incorrect-mask check, one-shot task inference, and the storage per task of
each method, printed side by side. The subset has 6,000 training images, so accuracies sit a
few points below the full-data runs of `impresslearn run`.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time

from .mnist import RunConfig, Runner
from .tables import nbytes, pct, summary_table

QUICKSTART = RunConfig(benchmark="permuted-mnist", data_root=None, new_tasks=2, basis="heterogeneous", basis_size=3,
                       mask_epochs=3.0, gn_objectives=["H"], gn_on=["supsup"], incorrect_tasks=2)


def quickstart(out: str | None = None, verbose: bool = True) -> dict:
    start = time.time()
    with tempfile.TemporaryDirectory() as cache:  # the per-channel run reuses the masks of the first
        cfg = dataclasses.replace(QUICKSTART, cache=cache, verbose=verbose)
        res = Runner(cfg, command="impresslearn quickstart").run()
        cfg_pc = dataclasses.replace(cfg, per_channel=True, gn_objectives=[], incorrect_tasks=0)
        res_pc = Runner(cfg_pc, command="impresslearn quickstart").run()
    imp = res_pc["impresslearn"]
    row = (f"ImpressLearn ({imp['basis']} K={imp['basis_size']}, per-channel)", pct(imp["mean_acc"]),
           nbytes(res_pc["storage"]["impresslearn"]))
    print(f"\nimpresslearn quickstart: {res['data']['source']}, {res['data']['train']} training images; "
          f"new tasks: {', '.join(res['tasks']['new'])}; basis tasks: {', '.join(res['tasks']['basis'])}\n")
    print(summary_table(res, extra_rows=[row]))
    print(f"\nfinished in {time.time() - start:.0f} s (backend {res['machine']['backend']})")
    if out:
        with open(out, "w") as f:
            json.dump({"per_layer": res, "per_channel": res_pc}, f, indent=1)
    return {"per_layer": res, "per_channel": res_pc}
