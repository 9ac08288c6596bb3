"""The PKR's one rule (core.pkr.check_pkr) and the places that apply it: the same values pass and fail everywhere,
each caller's message as before."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.app.settings import RunSettings
from core.errors import DataError, VPPError
from core.pkr import check_pkr, is_pkr

GOOD = (1, 1.0, 0.4, 1e-9, np.float32(0.5), np.float64(0.25))
BAD = (0, 0.0, -0.1, 1.0000001, 1.5, math.nan, math.inf, -math.inf, True, False, "0.5", None)


def test_one_rule():
    for v in GOOD:
        assert is_pkr(v) and check_pkr(v) == float(v) and type(check_pkr(v)) is float
    for v in BAD:
        assert not is_pkr(v)
        with pytest.raises(VPPError, match=r"PKR must be in \(0, 1\], got "):
            check_pkr(v)
    with pytest.raises(ValueError, match=r"^--pkr must be in \(0, 1\], got 1.5$"):
        check_pkr(1.5, source="--pkr", error=ValueError)
    with pytest.raises(VPPError, match=r"got '0.5'$"):  # not a number: shown as repr
        check_pkr("0.5")


def test_run_settings_are_checked_where_made():
    s = RunSettings(pkr=0.35)
    assert s.pkr == 0.35 and s.replace(pkr=0.7).pkr == 0.7 and s.pkr == 0.35  # frozen: a checked copy
    for bad in (0, 1.5, math.nan, True):
        with pytest.raises(ValueError, match=r"PKR must be in \(0, 1\], got "):
            RunSettings(pkr=bad)
        with pytest.raises(ValueError, match=r"PKR must be in \(0, 1\]"):
            s.replace(pkr=bad)
    with pytest.raises(DataError, match=r"x.vppproj: bad run settings: PKR must be in \(0, 1\], got 2"):
        RunSettings.from_json({"pkr": 2}, "x.vppproj")
    spec_settings = RunSettings().replace(spec=RunSettings(model_kind="file", model_path="m.safetensors").spec)
    assert (spec_settings.model_kind, spec_settings.model_path) == ("file", "m.safetensors")


def test_the_callers_use_the_rule():
    from core.app.sweeps import parse_pkrs
    from core.model.release.config import release_keep
    from core.model.vpp.builder import keep_schedule
    from core.sweep import configurations

    with pytest.raises(ValueError, match=r"^PKR must be in \(0, 1\], got 1.5$"):
        keep_schedule(1.5)
    with pytest.raises(ValueError, match=r"^PKR must be in \(0, 1\], got 0.0$"):
        release_keep(0)
    with pytest.raises(VPPError, match=r"^PKR must be in \(0, 1\], got 1.2$"):
        configurations([1.2], True)
    assert parse_pkrs("1.0, 0.7 0.4") == [1.0, 0.7, 0.4]
    with pytest.raises(ValueError, match=r"^PKR 1.5 is outside \(0, 1\]$"):
        parse_pkrs("0.4, 1.5")
    with pytest.raises(ValueError, match=r"^PKR nan is outside"):
        parse_pkrs("nan")
