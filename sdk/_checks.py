"""Type predicates shared by the SDK's argument and file checks.

`bool` is an `int` subclass in Python, so `isinstance(True, int)` holds; every count, size or
setting the SDK takes refuses booleans, and accepts numpy scalars (a `k` read from an array).
"""

from __future__ import annotations

import numbers

__all__ = ["is_int", "is_real"]


def is_int(x: object) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def is_real(x: object) -> bool:
    """A real number (Python or numpy, int or float), not a bool."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool)
