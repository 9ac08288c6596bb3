"""The patch keep ratio's one rule: a PKR is a finite number in (0, 1].

Every place that takes a PKR from outside (a session's ``set_pkr``, the keep schedules, the run settings of the
app and of a project, ``vpp infer --pkr``, the sweep's list) checks it with :func:`check_pkr`; only the error's
type and the name the message gives to the value differ between them:

    check_pkr(0.4)                                  # -> 0.4
    check_pkr(1.5, source="--pkr")                  # VPPError: --pkr must be in (0, 1], got 1.5
    check_pkr(0, error=ValueError)                  # ValueError: PKR must be in (0, 1], got 0

This module sits at the bottom of the imports (it needs only :mod:`core.errors`), so the model, the sessions,
the app and the commands can all call it.
"""

from __future__ import annotations

import math
from numbers import Real

from core.errors import VPPError

#: How the rule reads in messages and help texts.
PKR_RANGE = "(0, 1]"


def is_pkr(value: object) -> bool:
    """True for a real number (not a bool) with ``0 < value <= 1``; NaN and infinities are not PKRs."""
    if isinstance(value, bool) or not isinstance(value, Real):
        return False
    v = float(value)
    return math.isfinite(v) and 0.0 < v <= 1.0


def check_pkr(value: object, *, source: str = "PKR", error: type[Exception] = VPPError) -> float:
    """``value`` as a float if it is a PKR (:func:`is_pkr`), else ``error("<source> must be in (0, 1], got ...")``.

    ``source`` names the value in the message (an option such as ``--pkr``, a file's key); a number is shown as
    ``str`` shows it, anything else as ``repr`` does.
    """
    if not is_pkr(value):
        shown = value if isinstance(value, Real) and not isinstance(value, bool) else repr(value)
        raise error(f"{source} must be in {PKR_RANGE}, got {shown}")
    return float(value)  # type: ignore[arg-type]
