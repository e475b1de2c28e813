"""A file object that writes half of what it is given and then fails: a process killed, or a disk
filled, in the middle of a write. Tests patch ``os.fdopen`` with it to check atomic writes."""
from __future__ import annotations

import os


class HalfWriter:
    def __init__(self, f, error: BaseException):
        self.f, self.error = f, error

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def write(self, data):
        self.f.write(data[: len(data) // 2])
        self.f.flush()
        raise self.error


def half_writing_fdopen(error: BaseException):
    """A drop-in for ``os.fdopen`` whose files are HalfWriters raising ``error``."""
    real_fdopen = os.fdopen
    return lambda *a, **k: HalfWriter(real_fdopen(*a, **k), error)
