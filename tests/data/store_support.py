"""Shared builders for the episode-store tests: a small schema and deterministic episodes."""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import subprocess
import sys
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robot_offrl.data import ActionSpace, EpisodeStore, KeySpec, StoreSchema
from robot_offrl.errors import UserError

IMG = (84, 84, 3)


def make_schema(image: bool = True) -> StoreSchema:
    obs = [
        KeySpec("robot0_eef_pos", "float32", (3,), "lowdim"),
        KeySpec("object", "float32", (10,), "lowdim"),
    ]
    if image:
        obs.append(KeySpec("agentview_image", "uint8", IMG, "rgb"))
    return StoreSchema(
        obs=obs,
        action=ActionSpace(
            names=["dx", "dy", "dz", "dax", "day", "daz", "gripper"],
            units=["normalized"] * 7,
            mode="delta",
            low=[-1.0] * 7,
            high=[1.0] * 7,
        ),
        control_rate_hz=20.0,
        robot="Panda",
        task="lift",
    )


def make_episode(seed: int, length: int, image: bool = True) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = {
        "robot0_eef_pos": rng.normal(size=(length, 3)).astype(np.float32),
        "object": rng.normal(size=(length, 10)).astype(np.float32),
    }
    if image:
        obs["agentview_image"] = rng.integers(0, 256, size=(length, *IMG), dtype=np.uint8)
    actions = rng.uniform(-1, 1, size=(length, 7)).astype(np.float32)
    return obs, actions


def fill_store(path: str | Path, lengths: list[int], image: bool = True) -> EpisodeStore:
    store = EpisodeStore.create(str(path), make_schema(image), durable=False)
    for i, length in enumerate(lengths):
        obs, actions = make_episode(i, length, image)
        store.append_episode(
            obs,
            actions,
            expert=i % 2 == 0,
            source="scripted" if i % 2 == 0 else "play",
            success=True if i % 2 == 0 else None,
            attrs={"operator": "test", "seed": i},
        )
    return store


@pytest.fixture
def schema() -> StoreSchema:
    return make_schema()


@pytest.fixture
def small_store(tmp_path: Path) -> EpisodeStore:
    return fill_store(tmp_path / "small.zarr", [7, 12, 5, 9])


def _parser_with_data_only() -> argparse.ArgumentParser:
    from robot_offrl_cli import data_cmd

    parser = argparse.ArgumentParser(prog="robot-offrl")
    sub = parser.add_subparsers(dest="command")
    data_cmd.register(sub)
    return parser


def _fallback_main(argv: list[str]) -> int:
    """main.main's behaviour with only the data commands, for while other command modules are missing."""
    args = _parser_with_data_only().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        print(f"robot-offrl {args.command}: error: {err}", file=sys.stderr)
        return 2


def _entry() -> Callable[[list[str]], int]:
    try:
        from robot_offrl_cli.main import build_parser, main

        build_parser()
        return main
    except ImportError:
        return _fallback_main


@pytest.fixture
def cli() -> Callable[..., tuple[int, str, str]]:
    entry = _entry()

    def run(*argv: Any) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            try:
                code = entry([str(a) for a in argv])
            except SystemExit as exc:  # argparse errors and --help
                code = int(exc.code or 0)
        return code, out.getvalue(), err.getvalue()

    return run


ROOT = Path(__file__).resolve().parents[2]


def tree_digest(path: Path) -> str:
    """Hash of every file's name and bytes under ``path``: "untouched" means this did not change."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def run_cli_without(module: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``robot-offrl ARGV`` in a real process where ``module`` cannot be imported (a base install's view)."""
    code = (
        f"import sys; sys.modules[{module!r}] = None\n"
        "from robot_offrl_cli.main import main\n"
        f"sys.exit(main({[str(a) for a in argv]!r}))\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "sim"), str(ROOT / "hardware"), str(ROOT / "cli")])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
