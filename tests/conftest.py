"""Suite-wide: skip `render` tests, with the reason, where offscreen OpenGL cannot start.

Rendering needs EGL or OSMesa (`make test` installs them when it runs as root). Without them the
camera tests would fail on a missing library rather than on our code, so they are skipped and say why.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import pytest

PROBE = "import mujoco; ctx = mujoco.GLContext(32, 32); ctx.make_current(); ctx.free()"


@functools.lru_cache(maxsize=1)
def offscreen_rendering_error() -> str | None:
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    env.setdefault("PYOPENGL_PLATFORM", env["MUJOCO_GL"])
    try:
        proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, env=env)
    except subprocess.TimeoutExpired:
        return "offscreen rendering probe timed out"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
        return f"offscreen rendering unavailable (MUJOCO_GL={env['MUJOCO_GL']}): {last}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not any(item.get_closest_marker("render") for item in items):
        return
    reason = offscreen_rendering_error()
    if reason is None:
        return
    for item in items:
        if item.get_closest_marker("render"):
            item.add_marker(pytest.mark.skip(reason=reason + "; install libegl1/libosmesa6 (see .ci/sysdeps.sh)"))
