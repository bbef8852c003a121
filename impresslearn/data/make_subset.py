"""Write the MNIST subset that ships inside the package, from the full set.

    python -m impresslearn.data.make_subset --data-root ../shared/data

writes impresslearn/data/mnist_subset.npz (600 training and 100 test images per class, drawn
with seed 0, about 1.2 MB), the file `impresslearn quickstart` and the fast tests read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .mnist import SUBSET_FILE, load_mnist, make_subset, save_subset


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", required=True, help="folder holding MNIST/raw (torchvision layout)")
    p.add_argument("--out", default=str(Path(__file__).with_name(SUBSET_FILE)))
    p.add_argument("--train-per-class", type=int, default=600)
    p.add_argument("--test-per-class", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    sub = make_subset(load_mnist(a.data_root), a.train_per_class, a.test_per_class, a.seed)
    save_subset(sub, a.out)
    print(
        f"wrote {a.out}: {sub.train_x.shape[0]} training and {sub.test_x.shape[0]} test images, "
        f"{Path(a.out).stat().st_size} bytes"
    )


if __name__ == "__main__":
    main()
