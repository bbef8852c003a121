"""What the commands' parsers share: value types and the options -> config dataclass step."""

from __future__ import annotations

import argparse
import dataclasses


def parse_floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def parse_names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def config_from_args(a: argparse.Namespace, config_class):
    """The config dataclass (RunConfig, or the split benchmarks' SplitConfig) from parsed options."""
    fields = {f.name for f in dataclasses.fields(config_class)}
    kw = {k: v for k, v in vars(a).items() if k in fields and v is not None}
    kw["progress"] = False if a.quiet else None
    kw["verbose"] = not a.quiet
    return config_class(**kw)
