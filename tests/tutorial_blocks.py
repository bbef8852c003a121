"""Run the Python blocks of docs/tutorial.md (or another docs page) in order, in one namespace, in a folder.

python tests/tutorial_blocks.py docs      # remakes docs/tutorial-accuracy.png
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path

TUTORIAL = Path(__file__).resolve().parent.parent / "docs" / "tutorial.md"
OWN_MODEL = TUTORIAL.with_name("own-model.md")


def blocks(path: Path = TUTORIAL) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(encoding="utf-8"), flags=re.S | re.M)


def run(folder: str | Path, path: Path = TUTORIAL) -> dict:
    """Execute every block of the page `path` in `folder`; returns the namespace they built."""
    namespace: dict = {"__name__": "tutorial"}
    here = os.getcwd()
    os.chdir(folder)
    try:
        for i, code in enumerate(blocks(path)):
            with contextlib.redirect_stdout(sys.stdout):
                exec(compile(code, f"{path.name}, block {i + 1}", "exec"), namespace)
    finally:
        os.chdir(here)
    return namespace


if __name__ == "__main__":
    run(sys.argv[1] if len(sys.argv) > 1 else ".")
