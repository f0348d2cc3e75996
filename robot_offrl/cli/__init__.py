"""The ``robot-offrl`` command line."""
