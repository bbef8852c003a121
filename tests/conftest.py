import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

settings.register_profile("ci", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Real MNIST for the slower end-to-end tests: $IMPRESSLEARN_DATA, else ../shared/data beside the checkout.
DATA_ROOT = Path(os.environ.get("IMPRESSLEARN_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture
def mnist_root() -> Path:
    if not (DATA_ROOT / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        pytest.skip(f"real MNIST not found under {DATA_ROOT} (set IMPRESSLEARN_DATA)")
    return DATA_ROOT
