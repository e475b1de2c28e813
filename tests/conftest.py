"""Test-wide set-up: the development data folder, named for the tests only. The package itself
reads shared data only from $SGMA_SHARED_DATA; here it defaults to <repo>/../shared/data when that
folder exists, and subprocesses of the tests inherit it."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# helper scripts the tests run as subprocesses or import (tests/helpers/, not tests themselves)
sys.path.insert(0, str(Path(__file__).resolve().parent / "helpers"))

_DEV_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
if "SGMA_SHARED_DATA" not in os.environ and _DEV_DATA.is_dir():
    os.environ["SGMA_SHARED_DATA"] = str(_DEV_DATA.resolve())


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of small trainings (``pytestmark =
    pytest.mark.usefixtures("one_thread")``): tiny convolutions gain nothing from more, and on a
    shared two-core machine OpenMP threads that spin-wait for each other make a 1 s run take 30 s.
    torch is imported here, not at the top, so modules without it start fast."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
