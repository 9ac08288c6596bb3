"""Shared test fixtures. ../shared (beside the repository) holds real data; tests fail if it is missing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    data = SHARED / "data"
    if not data.is_dir():
        pytest.fail(f"test data folder {data} is missing: CI expects ../shared beside the clone")
    return data


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    """Keep tests deterministic and polite on the 2-core CI machine."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return
    torch.manual_seed(0)
