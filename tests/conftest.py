"""Shared pytest setup: hypothesis runs derandomized (profile "ci") unless HYPOTHESIS_PROFILE names another."""
import os

# One BLAS thread for the suite's own process, set before NumPy loads (the library sets nothing):
# the arrays here are tiny, and threads only fight over a shared machine's cores.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

from hypothesis import settings  # noqa: E402

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=50)
# "dev": fresh random examples each run, for hunting bugs locally (HYPOTHESIS_PROFILE=dev pytest)
settings.register_profile("dev", derandomize=False, deadline=None, max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
