"""Argument types and shared options of the training side's subcommands.

Standard library only, so that building the parsers stays fast without the `[distill]` extra.
The converters are named for what they accept (`positive_int`, `fraction`), as argparse's own
`type=int` is: each takes the command-line text and returns the value or raises
`argparse.ArgumentTypeError`, which argparse prints beside the option's name.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

__all__ = [
    "add_data_root",
    "fraction",
    "non_negative_float",
    "non_negative_int",
    "positive_float",
    "positive_int",
    "seeds",
]

T = TypeVar("T", int, float)


def _number(text: str, convert: Callable[[str], T], accept: Callable[[T], bool], want: str) -> T:
    """`convert(text)` if `accept` takes it; otherwise an error that says what was wanted."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {want}, got {text!r}") from None
    if not accept(value):
        raise argparse.ArgumentTypeError(f"expected {want}, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    return _number(text, int, lambda v: v >= 0, "an integer >= 0")


def positive_int(text: str) -> int:
    """An integer > 0."""
    return _number(text, int, lambda v: v > 0, "a positive integer")


def positive_float(text: str) -> float:
    """A finite number > 0."""
    return _number(text, float, lambda v: math.isfinite(v) and v > 0, "a positive number")


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    return _number(text, float, lambda v: math.isfinite(v) and v >= 0, "a number >= 0")


def fraction(text: str) -> float:
    """A number in [0, 1)."""
    return _number(text, float, lambda v: 0.0 <= v < 1.0, "a fraction in [0, 1)")


def seeds(text: str) -> list[int]:
    """Seeds like "0,1,2" (commas or spaces)."""
    try:
        return [int(s) for s in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds like 0,1,2, got {text!r}") from None


def add_data_root(p: argparse.ArgumentParser) -> None:
    """`--data-root`: where datasets are found, for every subcommand that loads one."""
    p.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="folder holding the datasets (default: $POCKETREC_DATA)",
    )
