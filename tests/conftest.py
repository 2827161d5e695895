"""Shared pytest setup: hypothesis runs derandomized (profile "ci") unless HYPOTHESIS_PROFILE names another."""
import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, deadline=None, max_examples=50)
# "dev": fresh random examples each run, for hunting bugs locally (HYPOTHESIS_PROFILE=dev pytest)
settings.register_profile("dev", derandomize=False, deadline=None, max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
