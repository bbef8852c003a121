"""Run `impresslearn ARGS...` and kill this process with SIGKILL at its N-th atomic file write,
as a crash or a scheduler would; used by tests/test_faults.py.

    python tests/kill_at_write.py N before run ...   # during the save: the temporary file is
                                                     # written, the rename has not happened
    python tests/kill_at_write.py N after run ...    # right after the N-th save landed
"""

import os
import signal
import sys

from impresslearn import cli

LIMIT, WHEN = int(sys.argv[1]), sys.argv[2]
_replace = os.replace
_count = 0


def replace_then_maybe_die(src, dst, *args, **kwargs):
    global _count
    if ".tmp-" not in os.path.basename(os.fspath(src)):  # only the library's atomic writes count
        return _replace(src, dst, *args, **kwargs)
    _count += 1
    if _count == LIMIT and WHEN == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    _replace(src, dst, *args, **kwargs)
    if _count == LIMIT and WHEN == "after":
        os.kill(os.getpid(), signal.SIGKILL)


os.replace = replace_then_maybe_die

if __name__ == "__main__":
    sys.exit(cli.main(sys.argv[3:]))
