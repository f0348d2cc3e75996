"""Import an optional extra's module, or say in one line which extra to install.

The base install stays small (no lerobot, no rerun); the commands that need them import them here,
only when they run, so a missing extra is a ``UserError`` the CLI prints, not a traceback at startup.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from robot_offrl.errors import MissingExtraError

# How each extra is installed; lerobot needs --no-deps (its pins would replace numpy/fsspec), see Makefile.
INSTALL_HINT = {
    "lerobot": "run `make venv` (EXTRAS includes lerobot), or see docs/dataset.md 'LeRobot datasets'",
    "viewer": "pip install 'robot-offrl[viewer]'",
}


def require(module: str, extra: str, what: str) -> ModuleType:
    """``importlib.import_module(module)``, raising ``MissingExtraError`` naming ``extra`` when it fails."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        hint = INSTALL_HINT.get(extra, f"pip install 'robot-offrl[{extra}]'")
        raise MissingExtraError(
            f"{what} needs the optional '{extra}' extra ({module} cannot be imported: {err}); {hint}"
        ) from err
