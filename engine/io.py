"""The one atomic file writer: every file the engine (and the app, and the benchmarks) writes
goes through ``atomic_write_bytes``, so a reader never sees half a file and a crash mid-write
leaves the old file whole.

The bytes go to a temporary file ``.<name>.<random>.tmp`` in the same folder, are flushed and
fsynced, then ``os.replace`` moves it onto the target in one step. The trainer removes such
temporaries left by a killed run (engine/trainer.py, the ``.*.pt.*.tmp`` pattern)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then os.replace onto ``path``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)       # mkstemp's 0600 would make saved files private
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
