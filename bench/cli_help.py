"""The --help of the benchmark scripts: every option with its default, and the description (the
script's docstring, with its command lines) kept as it is written."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """argparse's two formatters together: "(default: ...)" after each option's help, and the
    description's lines and indentation as written. Every option needs a help text for its
    default to show."""
