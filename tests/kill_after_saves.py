"""Run `impresslearn ARGS...` and kill this process with SIGKILL right after its N-th checkpoint
of a unit in progress (N = 0: never), as a crash or a scheduler would; used by test_resume.

    python tests/kill_after_saves.py N run --benchmark ...
"""

import os
import signal
import sys

from impresslearn import cli
from impresslearn.continual import resume

LIMIT = int(sys.argv[1])
_save = resume.FileCheckpoint.save
_count = 0


def save_then_maybe_die(self, data):
    global _count
    _save(self, data)
    if self.path.name.endswith(".progress.safetensors"):
        _count += 1
        if _count == LIMIT:
            os.kill(os.getpid(), signal.SIGKILL)


resume.FileCheckpoint.save = save_then_maybe_die

if __name__ == "__main__":
    sys.exit(cli.main(sys.argv[2:]))
