"""Fixtures for store tests; helpers live in store_support.py (unique module name across test folders)."""

from store_support import *  # noqa: F401,F403
