"""What the commands' parsers share: value types and the options -> config dataclass step."""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import re
import sys
from collections.abc import Sequence

from ..continual.backbone import network, weight_shapes
from ..threads import ThreadChoice, apply


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written, and every option's default in its help: the value, or for an
    option left unset by default, what decides it (a preset), so `--help` hides no default."""

    _UNSAID = "\x00"  # an option given no help: its default is still shown

    def _format_action(self, action: argparse.Action) -> str:
        if action.help is None and action.option_strings and action.nargs != 0:
            action = copy.copy(action)
            action.help = self._UNSAID
        return super()._format_action(action)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = "" if action.help == self._UNSAID else action.help or ""
        if "default" in text or action.default is argparse.SUPPRESS or not action.option_strings:
            return text
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse._HelpAction)):
            return text
        if action.default is None:
            return f"{text} (default: {PRESET_DEFAULTS.get(action.dest, 'none')})".lstrip()
        shown = (",".join(map(str, action.default)) or "none") if isinstance(action.default, list) else action.default
        return f"{text} (default: {shown})".lstrip()


# Options whose default comes from a preset rather than a fixed value.
PRESET_DEFAULTS = {
    **{
        k: "the --preset's"
        for k in (
            "density",
            "mask",
            "init",
            "scale",
            "outputs",
            "mask_optimizer",
            "mask_lr",
            "mask_epochs",
            "mask_iterations",
            "arch",
        )
    },
    **{k: "the --alpha-preset's" for k in ("alpha_optimizer", "alpha_lr", "alpha_epochs", "alpha_batch_size", "alpha_schedule")},
}


class Parser(argparse.ArgumentParser):
    """argparse, refusing a bad option with one sentence (not the usage block) and status 2, and
    showing every default in `--help` (`HelpFormatter`)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"impresslearn: error: {message} (see {self.prog} --help)\n")


def finite_float(text: str) -> float:
    """A float option: nan and inf are refused here, in the option's words, not after a run
    trained to chance on them (docs/design.md §4.7)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def parse_floats(text: str) -> list[float]:
    return [finite_float(v) for v in text.split(",") if v.strip()]


def parse_names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def names_of(choices: Sequence[str]):
    """An option type: comma-separated names, each one of `choices`, refused by argparse in the
    option's words ("argument --gn: invalid choice 'X' (choose from G, H)") before any config is
    made; the config classes check the same for callers of the library."""

    def parse(text: str) -> list[str]:
        names = parse_names(text)
        for name in names:
            if name not in choices:
                raise argparse.ArgumentTypeError(f"invalid choice {name!r} (choose from {', '.join(choices)})")
        return names

    return parse


def parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def with_flags(message: str, parser: argparse.ArgumentParser) -> str:
    """A config check's message in the words of the command line: field names become options
    ("basis_size must be ..." -> "--basis-size must be ...")."""
    for action in parser._actions:  # argparse keeps no public list of its options
        longs = [o for o in action.option_strings if o.startswith("--")]
        if not longs or action.dest == "help":
            continue
        # a field name with an underscore anywhere; a one-word name ("density") only as the
        # subject of a refusal ("density must ..."), not where it is an ordinary word
        pattern = (
            rf"(?<![\w-]){re.escape(action.dest)}(?![\w-])" if "_" in action.dest else rf"^{re.escape(action.dest)}(?= must)"
        )
        message = re.sub(pattern, longs[0], message)
    return message


class Refused(Exception):
    """A command refused before doing any work (a bad value, an unusable --out, missing data):
    the CLI prints its one sentence and exits with status 2."""


def config_from_args(a: argparse.Namespace, config_class):
    """The config dataclass (RunConfig, or the split benchmarks' SplitConfig) from parsed options."""
    fields = {f.name for f in dataclasses.fields(config_class)}
    kw = {k: v for k, v in vars(a).items() if k in fields and v is not None}
    kw["progress"] = False if a.quiet else None
    kw["verbose"] = not a.quiet
    return config_class(**kw)


def use_threads(backbone, explicit: int | None) -> ThreadChoice:
    """Set torch's CPU threads for a run of `backbone` (a BackboneConfig): `--threads`, else the
    environment's, else impresslearn.threads' rule by model size. Silent: a refused run prints
    only its refusal; `say_threads` reports the choice once the run is accepted."""
    weights = sum(math.prod(s) for s in weight_shapes(network(backbone)).values())
    return apply(weights, explicit)


def say_threads(choice: ThreadChoice, quiet: bool = False) -> None:
    if not quiet:
        print(f"impresslearn: {choice.threads} CPU thread{'s' if choice.threads > 1 else ''} ({choice.reason})", file=sys.stderr)
