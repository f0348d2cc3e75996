"""Fixtures for trainer tests; helpers live in train_support.py (unique module name across test folders)."""

from train_support import lowdim_store  # noqa: F401
