"""Type tests for values read from JSON, configs and checkpoints, where ``True`` must not pass for ``1``.

    is_int(True)        # False: a JSON boolean is not an integer here
    is_number(1)        # True: an integer is a number
    is_number(math.inf) # True; ``is_finite_number`` says False

Every validator of the project (model configs, results and ground-truth files, batch shards, the training
config) uses these, so "an integer" and "a number" mean the same everywhere. Imports nothing of the project.
"""

from __future__ import annotations

import math
from typing import Any


def is_int(value: Any) -> bool:
    """An ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """An ``int`` or ``float`` that is not a ``bool`` (NaN and infinities included)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    """:func:`is_number` and finite (no NaN, no infinity)."""
    return is_number(value) and math.isfinite(value)
