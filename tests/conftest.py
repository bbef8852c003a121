import os
import sys
from pathlib import Path

import torch

# Test modules import their shared helpers (cases.py) by name, tests/kernels/ included: make this
# folder importable whatever pytest's import mode.
sys.path.insert(0, str(Path(__file__).resolve().parent))

# Without a GPU the Triton kernels run in Triton's interpreter on CPU tensors. It must be chosen
# before the kernels are defined (they are imported lazily, by the backend registry), and torch
# does not import triton on its own, so setting it here is early enough. An explicit setting wins.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile("ci", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Real MNIST for the slower end-to-end tests: $IMPRESSLEARN_DATA, else ../shared/data beside the checkout.
DATA_ROOT = Path(os.environ.get("IMPRESSLEARN_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def pytest_configure(config):
    # The kernel tests mark each case with its backend (cases.needs), so that a run can pick
    # backends: the GPU suite runs `-m "not reference and not native"` there.
    for name in ("reference", "native", "triton"):
        config.addinivalue_line("markers", f"{name}: a kernel test of the {name} backend")


@pytest.fixture
def mnist_root() -> Path:
    if not (DATA_ROOT / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.skip(f"real MNIST not found under {DATA_ROOT} (set IMPRESSLEARN_DATA)")
    return DATA_ROOT


@pytest.fixture
def one_thread():
    """Run a test with one intra-op thread (and restore the setting): small convolutions on a
    shared 2-core machine run many times faster than with two contending OpenMP threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _same_random_state():
    # Every test starts from one torch random state, whatever ran before it: an unseeded draw in a
    # test is the same input on every run and in any selection of tests, so a tolerance that held
    # once holds (an unseeded input once drew a gradient just past its float32 tolerance in CI).
    torch.manual_seed(0)
