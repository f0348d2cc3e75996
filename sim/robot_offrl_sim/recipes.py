"""Dataset recipes (datasets/*.yaml): which episodes, how many, from which region, with which seed.

A recipe regenerates a sim dataset bit for bit, which is what lets a paper-style comparison (RISE vs
BC vs IDQL) be re-run by someone else from a 20-line file instead of a shared multi-GB store.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from robot_offrl.errors import ConfigError
from robot_offrl_sim.generators import KINDS
from robot_offrl_sim.spec import load_task


@dataclass(frozen=True)
class RecipePart:
    kind: str
    episodes: int
    region: str
    checkpoint: str | None = None  # policy_rollout only: the run/checkpoint folder whose policy runs


def _checkpoint(raw: object, kind: str, where: str, base: Path) -> str | None:
    """A policy_rollout part names an existing checkpoint (as given, or relative to the recipe's folder)."""
    if kind != "policy_rollout":
        if raw is not None:
            raise ConfigError(f"{where}: `checkpoint` belongs to kind policy_rollout, not {kind!r}")
        return None
    if raw is None:
        raise ConfigError(f"{where}: kind policy_rollout needs `checkpoint:` (a run or checkpoint folder)")
    path = Path(str(raw))
    if not path.exists() and not path.is_absolute() and (base / path).exists():
        path = base / path
    if not path.exists():
        raise ConfigError(f"{where}: checkpoint {raw} not found (train it first, e.g. robot-offrl train algo=bc ...)")
    return str(path)


@dataclass(frozen=True)
class Recipe:
    name: str
    task: str
    seed: int
    cameras: tuple[str, ...]
    horizon: int | None
    parts: tuple[RecipePart, ...]

    @property
    def total_episodes(self) -> int:
        return sum(p.episodes for p in self.parts)


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {path} not found (see datasets/README.md for the available recipes)")
    raw = yaml.safe_load(path.read_text())
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: a recipe is a mapping with task, seed and parts")
    for key in ("task", "parts"):
        if key not in raw:
            raise ConfigError(f"{path}: missing key {key!r}")
    spec = load_task(str(raw["task"]))
    parts = []
    for i, p in enumerate(raw["parts"] or []):
        if not isinstance(p, Mapping) or "kind" not in p or "episodes" not in p:
            raise ConfigError(f"{path}: parts[{i}] needs kind and episodes, got {p!r}")
        kind = str(p["kind"])
        if kind not in KINDS:
            raise ConfigError(f"{path}: parts[{i}] kind {kind!r} unknown; use one of {list(KINDS)}")
        episodes = int(p["episodes"])
        if episodes < 1:
            raise ConfigError(f"{path}: parts[{i}] episodes must be >= 1, got {episodes}")
        region = str(p.get("region", "narrow" if kind == "expert" else "wide"))
        spec.region(region)
        checkpoint = _checkpoint(p.get("checkpoint"), kind, f"{path}: parts[{i}]", path.parent)
        parts.append(RecipePart(kind, episodes, region, checkpoint))
    if not parts:
        raise ConfigError(f"{path}: a recipe needs at least one part")
    horizon = raw.get("horizon")
    return Recipe(
        name=str(raw.get("name", path.stem)),
        task=spec.name,
        seed=int(raw.get("seed", 0)),
        cameras=tuple(raw.get("cameras") or ()),
        horizon=None if horizon is None else int(horizon),
        parts=tuple(parts),
    )


def build_dataset(recipe_path: str | Path, out: str, seed: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Generate every part of a recipe into a new store at `out` (refuses an existing store)."""
    from robot_offrl.data import StoreExistsError
    from robot_offrl_sim.collect import collect
    from robot_offrl_sim.tasks import make_env

    recipe = load_recipe(recipe_path)
    base_seed = recipe.seed if seed is None else int(seed)
    if Path(out).exists():
        raise StoreExistsError(f"{out}: already exists; build-dataset writes a new store, pick another --out")
    env = make_env(recipe.task, cameras=recipe.cameras, horizon=recipe.horizon)
    counts: dict[str, int] = {}
    try:
        for i, part in enumerate(recipe.parts):
            part_seed = zlib.crc32(f"{base_seed}/{i}/{part.kind}".encode())
            idx = collect(
                recipe.task, part.kind, part.episodes, out, region=part.region, seed=part_seed, env=env,
                progress=progress, extra_attrs={"recipe": recipe.name, "recipe_seed": base_seed},
                checkpoint=part.checkpoint,
            )
            counts[part.kind] = counts.get(part.kind, 0) + len(idx)
    finally:
        env.close()
    return {"recipe": recipe.name, "task": recipe.task, "seed": base_seed, "episodes": counts, "out": str(out)}
