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


# Top-level fields a recipe may have; anything else is most likely a typo and is refused.
RECIPE_FIELDS = ("name", "task", "seed", "horizon", "cameras", "parts")
PART_FIELDS = ("kind", "episodes", "region", "checkpoint")


def _int_field(path: Path, field: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{path}: {field} must be an integer >= {minimum}, got {value!r}")
    return value


def _str_field(path: Path, field: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{path}: {field} must be a non-empty string, got {value!r}")
    return value


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot be read ({err})") from None


def load_recipe(path: str | Path) -> Recipe:
    """Parse and check a recipe; every mistake is a ConfigError naming the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {path} not found (see datasets/README.md for the available recipes)")
    raw = _read_yaml(path)
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: a recipe is a mapping with task, seed and parts")
    unknown = sorted(str(k) for k in raw if k not in RECIPE_FIELDS)
    if unknown:
        raise ConfigError(f"{path}: unknown field(s) {', '.join(unknown)}; a recipe has {', '.join(RECIPE_FIELDS)}")
    for key in ("task", "parts"):
        if key not in raw:
            raise ConfigError(f"{path}: missing key {key!r}")
    spec = load_task(_str_field(path, "task", raw["task"]))
    if not isinstance(raw["parts"], list) or not raw["parts"]:
        raise ConfigError(f"{path}: parts must be a non-empty list of {{kind, episodes, region}}, got {raw['parts']!r}")
    parts = []
    for i, p in enumerate(raw["parts"]):
        if not isinstance(p, Mapping) or "kind" not in p or "episodes" not in p:
            raise ConfigError(f"{path}: parts[{i}] needs kind and episodes, got {p!r}")
        extra = sorted(str(k) for k in p if k not in PART_FIELDS)
        if extra:
            raise ConfigError(f"{path}: parts[{i}] has unknown field(s) {', '.join(extra)}; use {', '.join(PART_FIELDS)}")
        kind = str(p["kind"])
        if kind not in KINDS:
            raise ConfigError(f"{path}: parts[{i}] kind {kind!r} unknown; use one of {list(KINDS)}")
        episodes = _int_field(path, f"parts[{i}].episodes", p["episodes"], 1)
        region = _str_field(path, f"parts[{i}].region", p.get("region", "narrow" if kind == "expert" else "wide"))
        try:
            spec.region(region)
        except ConfigError as err:
            raise ConfigError(f"{path}: parts[{i}].region: {err}") from None
        checkpoint = _checkpoint(p.get("checkpoint"), kind, f"{path}: parts[{i}]", path.parent)
        parts.append(RecipePart(kind, episodes, region, checkpoint))
    if not parts:
        raise ConfigError(f"{path}: a recipe needs at least one part")
    horizon = raw.get("horizon")
    cameras = raw.get("cameras") or []
    if not isinstance(cameras, list) or not all(isinstance(c, str) and c for c in cameras):
        raise ConfigError(f"{path}: cameras must be a list of camera names, got {cameras!r}")
    return Recipe(
        name=_str_field(path, "name", raw.get("name", path.stem)),
        task=spec.name,
        seed=_int_field(path, "seed", raw.get("seed", 0), 0),
        cameras=tuple(cameras),
        horizon=None if horizon is None else _int_field(path, "horizon", horizon, 1),
        parts=tuple(parts),
    )


def build_dataset(recipe_path: str | Path, out: str, seed: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Generate every part of a recipe into a new store at `out` (refuses an existing path).

    The store is built beside `out` and renamed into place only when every part is in (see
    robot_offrl/data/staging.py): a build killed midway leaves no partial store at `out`, so
    `run_experiment` (which reuses an existing dataset) can never train on half a recipe.
    """
    from robot_offrl.data.staging import build_beside
    from robot_offrl_sim.collect import collect
    from robot_offrl_sim.tasks import make_env

    recipe = load_recipe(recipe_path)
    base_seed = recipe.seed if seed is None else int(seed)
    counts: dict[str, int] = {}
    with build_beside(out, "sim build-dataset") as staged:
        env = make_env(recipe.task, cameras=recipe.cameras, horizon=recipe.horizon)
        try:
            for i, part in enumerate(recipe.parts):
                part_seed = zlib.crc32(f"{base_seed}/{i}/{part.kind}".encode())
                idx = collect(
                    recipe.task, part.kind, part.episodes, staged, region=part.region, seed=part_seed, env=env,
                    progress=progress, extra_attrs={"recipe": recipe.name, "recipe_seed": base_seed},
                    checkpoint=part.checkpoint,
                )
                counts[part.kind] = counts.get(part.kind, 0) + len(idx)
        finally:
            env.close()
    return {"recipe": recipe.name, "task": recipe.task, "seed": base_seed, "episodes": counts, "out": str(out)}
