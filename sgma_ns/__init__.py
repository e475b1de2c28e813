"""SGMA Part Explorer: namespace package mapping engine/, app/ and resources/.

OpenMP threads that spin while waiting make torch's 2-thread work collapse when the cores are
shared (measured: demo training 4.6 -> 124 img/s, docs/benchmarks.md); a passive wait policy is
set before torch is first imported, unless the user chose one."""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
