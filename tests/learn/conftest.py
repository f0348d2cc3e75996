"""Fixtures for learning-core tests; helpers live in learn_support.py (unique module name across test folders)."""

from learn_support import rng, single_torch_thread  # noqa: F401
