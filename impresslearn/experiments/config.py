"""What every experiment's settings share (docs/design.md §4.6): `ExperimentConfig`, the base of
`mnist.RunConfig`, `split.SplitConfig` and `adapt.AdaptConfig`.

A config is a dataclass written into its results file as `config` (`record()`); a run started
again with the same config resumes, and `RESUME_FREE` names the fields a resumed run may change
without changing what it computes (how it shows progress, where it runs).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from ..seeding import check_seed


@dataclasses.dataclass
class ExperimentConfig:
    """data_root: where the data set is (None: the MNIST subset shipped with the package); seed:
    every random choice of the run derives from it; restart: replace the results (and units) of
    another run at the same --out instead of refusing; verbose: log lines on stderr; progress:
    progress bars (None: only on a terminal)."""

    data_root: str | None = None
    seed: int = 0
    restart: bool = False
    verbose: bool = True
    progress: bool | None = None

    RESUME_FREE: ClassVar[tuple[str, ...]] = ("progress", "verbose", "restart")

    def check_common(self) -> None:
        check_seed(self.seed)

    def record(self) -> dict:
        """The config as its results file keeps it (tuples as lists, so that a resumed run's
        config compares equal with the one read back)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


__all__ = ["ExperimentConfig"]
