"""Helpers for the "ship it" tests: read Dockerfiles, .dockerignore and docs the way Docker and a reader
would, and run the real `robot-offrl` command in a child process with a chosen environment.

Docker itself is absent on the development machine, so the images are checked statically: every path
they name must exist and pass .dockerignore, and hadolint must be clean.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
DOCKERFILES = (DOCKER / "train.Dockerfile", DOCKER / "robot.Dockerfile")
PYTHONPATH = os.pathsep.join(str(REPO / p) for p in (".", "sim", "hardware", "cli"))

# Importable names a machine without ROS 2 lacks: rclpy and the message packages the nodes use.
ROS_MODULES = (
    "rclpy", "rcl_interfaces", "builtin_interfaces", "std_msgs", "std_srvs", "sensor_msgs",
    "geometry_msgs", "trajectory_msgs", "diagnostic_msgs", "lifecycle_msgs",
)


def project_scripts() -> dict[str, str]:
    """[project.scripts] of pyproject.toml: the console scripts `pip install` creates."""
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


def dockerfile_instructions(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped (Docker's own reading)."""
    result: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # comment lines inside a continued instruction are removed by Docker
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        text = " ".join(p for p in pending if p)
        pending = []
        keyword, _, args = text.partition(" ")
        result.append(Instruction(keyword.upper(), args.strip(), start))
    return result


def exec_form(args: str) -> list[str]:
    """ENTRYPOINT/CMD/SHELL arguments: JSON exec form, or shell form split like a shell would."""
    if args.startswith("["):
        return list(json.loads(args))
    return shlex.split(args)


def copy_sources(instruction: Instruction) -> tuple[list[str], str, bool]:
    """(sources, destination, from_another_stage) of a COPY/ADD instruction."""
    words = shlex.split(instruction.args)
    from_stage = any(w.startswith("--from=") for w in words)
    paths = [w for w in words if not w.startswith("--")]
    return paths[:-1], paths[-1], from_stage


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def dockerignore_rules(path: Path) -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:] if negated else line
        rules.append((negated, _pattern_regex(pattern.strip("/"))))
    return rules


def is_ignored(rel_path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent folders decides."""
    parts = rel_path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for negated, regex in rules:
        if any(regex.match(c) for c in candidates):
            ignored = not negated
    return ignored


LIFT_LOWDIM = {"robot0_eef_pos": 3, "robot0_eef_quat": 4, "robot0_gripper_qpos": 2, "object": 10}


def make_lift_store(path: Path, episodes: int = 4, steps: int = 20) -> Path:
    """A tiny real store with the Lift task's low-dim keys (what `train task=lift` expects); half expert."""
    import numpy as np

    from robot_offrl.data import ActionSpace, EpisodeStore, KeySpec, StoreSchema

    schema = StoreSchema(
        obs=[KeySpec(k, "float32", (d,), "lowdim") for k, d in LIFT_LOWDIM.items()],
        action=ActionSpace(names=["dx", "dy", "dz", "dax", "day", "daz", "gripper"], units=["normalized"] * 7,
                           mode="delta", low=[-1.0] * 7, high=[1.0] * 7),
        control_rate_hz=20.0, robot="Panda", task="lift")
    store = EpisodeStore.create(path, schema)
    rng = np.random.default_rng(0)
    for i in range(episodes):
        expert = i < episodes // 2
        store.append_episode(obs={k: rng.normal(size=(steps, d)).astype(np.float32) for k, d in LIFT_LOWDIM.items()},
                             actions=rng.uniform(-1, 1, (steps, 7)).astype(np.float32), expert=expert,
                             source="teleop" if expert else "play", success=None)
    return path


def run_cli(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None,
            pythonpath_prefix: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`robot-offrl ARGS` in a fresh interpreter, as a newcomer's shell would run it."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = PYTHONPATH if pythonpath_prefix is None else pythonpath_prefix + os.pathsep + PYTHONPATH
    return subprocess.run(
        [sys.executable, "-m", "robot_offrl_cli.main", *args], capture_output=True, text=True,
        env=full_env, cwd=cwd or REPO, timeout=timeout,
    )


# The [sim] extra's modules: a robot computer without the simulator lacks them.
SIM_MODULES = ("robosuite", "mujoco", "robomimic")


def hide_ros(folder: Path) -> Path:
    """A folder that, put first on PYTHONPATH, makes every ROS 2 module fail to import as on a machine
    without ROS (the ROS wheels stay installed for the other test folders)."""
    return hide_modules(folder, ROS_MODULES)


def hide_modules(folder: Path, names: tuple[str, ...]) -> Path:
    """A folder that, put first on PYTHONPATH, makes each of ``names`` fail to import as if not installed."""
    for name in names:
        package = folder / name
        package.mkdir(parents=True, exist_ok=True)
        (package / "__init__.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{name}'\", name={name!r})\n"
        )
    return folder


def fenced_shell_lines(markdown: Path) -> list[str]:
    """Commands in ```bash / ``` blocks, continuation lines joined, comments removed."""
    lines: list[str] = []
    fence_open = in_shell = False
    pending = ""
    for raw in markdown.read_text().splitlines():
        stripped = raw.strip()
        if stripped.startswith("```"):
            in_shell = not fence_open and stripped in ("```", "```bash", "```sh", "```console")
            fence_open = not fence_open
            pending = ""
            continue
        if not in_shell:
            continue
        text = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        full = (pending + text).strip()
        pending = ""
        if full:
            lines.append(full)
    return lines


def robot_offrl_argvs(markdown: Path) -> list[list[str]]:
    """The arguments after every `robot-offrl` (or its image, which has it as entry point) in a doc's
    shell blocks, up to a shell operator. Placeholders written <LIKE_THIS> are left in."""
    argvs = []
    for line in fenced_shell_lines(markdown):
        for part in re.split(r"\s*(?:&&|;|\|\|?)\s*", line):
            try:
                words = shlex.split(part)
            except ValueError:
                continue
            for i, word in enumerate(words):
                previous = words[i - 1] if i else ""
                is_image = (word.split(":")[0] == "robot-offrl-train" and previous not in ("-t", "--tag")
                            and "--entrypoint" not in words)
                if word == "robot-offrl" or is_image or (word == "robot_offrl_cli.main" and previous == "-m"):
                    argvs.append(words[i + 1 :])
                    break
    return argvs
