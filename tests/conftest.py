"""Test-wide set-up: the development data folder, named for the tests only. The package itself
reads shared data only from $SGMA_SHARED_DATA; here it defaults to <repo>/../shared/data when that
folder exists, and subprocesses of the tests inherit it."""
from __future__ import annotations

import os
import sys
from pathlib import Path

# helper scripts the tests run as subprocesses or import (tests/helpers/, not tests themselves)
sys.path.insert(0, str(Path(__file__).resolve().parent / "helpers"))

_DEV_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
if "SGMA_SHARED_DATA" not in os.environ and _DEV_DATA.is_dir():
    os.environ["SGMA_SHARED_DATA"] = str(_DEV_DATA.resolve())
