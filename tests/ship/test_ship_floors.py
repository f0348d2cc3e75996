"""Every package on its own floor (docs/contracts.md, "Packages and who imports what").

An AST walk over the source, so an import inside a function counts as much as one at the top: a lazy
import still makes the lower floor need the upper one at run time. Floors, bottom up: the library
(``robot_offrl``; inside it ``data`` below ``algos``/``train``, ``checkpoint``/``device`` below
``train`` and ``runtime``), then sim and ROS beside each other, then the command line, which nothing
imports. The simulator stack is the ``sim`` extra; the library, the runtime and the ROS node work
without it.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ship_support import PYTHONPATH, REPO, SIM_MODULES, hide_modules, tomllib

PACKAGES = {
    "robot_offrl": REPO / "robot_offrl",
    "robot_offrl_sim": REPO / "sim" / "robot_offrl_sim",
    "robot_offrl_ros": REPO / "hardware" / "robot_offrl_ros",
    "robot_offrl_cli": REPO / "cli" / "robot_offrl_cli",
}
# (importing modules, forbidden prefixes, allowed exceptions by file name): no arrow runs up a floor.
RULES: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = [
    ("robot_offrl", ("robot_offrl_sim", "robot_offrl_ros", "robot_offrl_cli", "robosuite", "mujoco", "rclpy"), ()),
    ("robot_offrl.data", ("robot_offrl.algos", "robot_offrl.train", "robot_offrl.runtime"), ()),
    ("robot_offrl.runtime", ("robot_offrl.train",), ()),
    ("robot_offrl.checkpoint", ("robot_offrl.train", "robot_offrl.runtime"), ()),
    ("robot_offrl.device", ("robot_offrl.train", "robot_offrl.runtime"), ()),
    ("robot_offrl.record", ("robot_offrl.train", "robot_offrl.runtime", "robot_offrl.algos"), ()),
    ("robot_offrl_sim", ("robot_offrl_cli", "robot_offrl_ros"), ()),
    # The rehearsal bridge (sim arm, scripted leader, sweep through ROS) wraps the simulator on purpose
    # (docs/deploy.md, "Rehearse on the simulated arm"); its modules are named sim_* so the rule stays legible.
    ("robot_offrl_ros", ("robot_offrl_cli", "robot_offrl_sim"), ("sim_",)),
]


def module_name(path: Path) -> str:
    for package, root in PACKAGES.items():
        if path.is_relative_to(root):
            parts = path.relative_to(root).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            return ".".join((package, *parts))
    raise ValueError(path)


def imported_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module an import statement anywhere in ``source`` names, relative imports resolved."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names)
    return found


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(module: str, imports: set[str], file_name: str) -> list[str]:
    bad = []
    for importer, forbidden, exceptions in RULES:
        if not _under(module, importer) or file_name.startswith(exceptions):
            continue
        bad += [f"{module} imports {name} (rule: {importer} must not import {prefix})"
                for name in sorted(imports) for prefix in forbidden if _under(name, prefix)]
    return bad


def test_no_arrow_runs_up_a_floor() -> None:
    found = []
    for root in PACKAGES.values():
        for path in sorted(root.rglob("*.py")):
            module = module_name(path)
            imports = imported_modules(path.read_text(), module, is_package=path.name == "__init__.py")
            found += violations(module, imports, path.name)
    assert not found, "\n".join(found)


def test_the_checker_sees_lazy_and_relative_imports() -> None:
    """The walk itself: a lazy import in a function and a relative import are both caught."""
    lazy = "def f():\n    from robot_offrl.train.loop import train\n"
    assert violations("robot_offrl.data.x", imported_modules(lazy, "robot_offrl.data.x"), "x.py")
    relative = "from ..train import loop\n"
    assert violations("robot_offrl.runtime.x", imported_modules(relative, "robot_offrl.runtime.x"), "x.py")
    sim = "import robot_offrl_sim.tasks\n"
    assert violations("robot_offrl_ros.node", imported_modules(sim, "robot_offrl_ros.node"), "node.py")
    assert not violations("robot_offrl_ros.sim_arm_env", imported_modules(sim, "robot_offrl_ros.sim_arm_env"),
                          "sim_arm_env.py")
    relative_sim = "from robot_offrl_sim.sweep import SweepConfig\n"
    assert violations("robot_offrl_ros.outputs", imported_modules(relative_sim, "robot_offrl_ros.outputs"), "outputs.py")


def test_nothing_imports_the_command_line() -> None:
    """Tests may drive the CLI; no package, benchmark or launch file may build on it."""
    users = []
    for path in [*REPO.glob("bench/**/*.py"), *REPO.glob("hardware/**/*.py"), *REPO.glob("sim/**/*.py"),
                 *REPO.glob("robot_offrl/**/*.py")]:
        imports = imported_modules(path.read_text(), "x")
        users += [str(path.relative_to(REPO)) for name in imports if _under(name, "robot_offrl_cli")]
    assert not users, users


def test_the_simulator_is_an_extra_that_make_installs() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    sim = " ".join(project["optional-dependencies"]["sim"])
    for name in SIM_MODULES:
        assert name not in core and name in sim, name
    extras = next(line for line in (REPO / "Makefile").read_text().splitlines() if line.startswith("EXTRAS ?="))
    assert "sim" in extras.split("=", 1)[1].split(","), extras


@pytest.mark.ros
def test_library_runtime_and_ros_node_work_without_the_simulator(tmp_path: Path) -> None:
    """Without robosuite, mujoco and robomimic: the library, the CLI parser, the record loop and the ROS
    node import; a low-dim checkpoint loads and plans; a camera encoder says what to install."""
    pytest.importorskip("rclpy")
    fixture = REPO / "tests" / "fixtures" / "checkpoint_v2_rise"
    code = f"""
import json, sys
import numpy as np
import robot_offrl, robot_offrl.train.loop, robot_offrl.record.session, robot_offrl_ros.policy_node
import robot_offrl_ros.recorder
from robot_offrl_cli.main import build_parser
from robot_offrl.errors import MissingExtraError
from robot_offrl.models.encoders import CameraEncoder
from robot_offrl.runtime import PolicyRuntime
build_parser()
expected = json.load(open({str(fixture / "expected_plan.json")!r}))
policy = PolicyRuntime.load({str(fixture)!r}, device="cpu")
policy.plan({{k: np.asarray(v, dtype=np.float32) for k, v in expected["obs"].items()}})
try:
    CameraEncoder((32, 32, 3), crop=(28, 28), num_keypoints=8, feature_dim=16)
except MissingExtraError as err:
    print("camera:", err)
loaded = [m for m in sys.modules if m.split(".")[0] in {SIM_MODULES!r}]
assert not loaded, loaded
"""
    hidden = str(hide_modules(tmp_path / "no_sim", SIM_MODULES))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": hidden + os.pathsep + PYTHONPATH})
    assert proc.returncode == 0, proc.stderr
    assert "camera: camera observations (robomimic's encoder networks) needs the optional 'sim' extra" in proc.stdout
    assert "robot-offrl[sim]" in proc.stdout
