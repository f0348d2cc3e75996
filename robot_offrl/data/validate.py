"""Checks that keep bad data out of a store and find it in one that already has it.

The same per-episode checks run before an append writes a single byte and over every committed
episode in ``validate``, so "it validated" and "it was accepted" mean the same thing.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from robot_offrl.data.errors import EpisodeValidationError, StoreError
from robot_offrl.data.schema import KeySpec, StoreSchema
from robot_offrl.data.staging import STAGING_SUFFIX

if TYPE_CHECKING:
    from robot_offrl.data.store import EpisodeStore


class SparseChunksWarning(UserWarning):
    """A store written before dense chunks lacks chunk files: all-zero chunks zarr skipped, or lost ones."""


def _check_finite(values: np.ndarray, *, episode: int | str, key: str) -> None:
    if values.size == 0:
        return
    bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if bad.any():
        steps = np.flatnonzero(bad)
        kind = "NaN" if np.isnan(values[steps[0]]).any() else "inf"
        raise EpisodeValidationError(
            f"{kind} at step {int(steps[0])} ({len(steps)} bad steps in total); fix the recorder or drop "
            "these steps before saving",
            episode=episode,
            key=key,
        )


def check_key_array(spec: KeySpec, values: object, *, episode: int | str) -> np.ndarray:
    """One observation key's (T, *shape) array, cast to the stored dtype where that is lossless in meaning.

    Low-dim keys accept any float dtype (robosuite hands out float64) and store float32; images must
    already have the schema's dtype, because casting a float image to uint8 silently changes its meaning.
    """
    arr = np.asarray(values)
    if arr.ndim != 1 + len(spec.shape) or tuple(arr.shape[1:]) != spec.shape:
        raise EpisodeValidationError(
            f"shape {tuple(arr.shape)} disagrees with the schema: expected (T, {', '.join(map(str, spec.shape))})",
            episode=episode,
            key=spec.name,
        )
    if spec.kind == "lowdim":
        if not np.issubdtype(arr.dtype, np.floating):
            raise EpisodeValidationError(
                f"dtype {arr.dtype} disagrees with the schema (float32 low-dim); pass floats", episode=episode,
                key=spec.name,
            )
        arr = arr.astype(np.float32, copy=False)
        _check_finite(arr, episode=episode, key=spec.name)
    elif arr.dtype != np.dtype(spec.dtype):
        raise EpisodeValidationError(
            f"dtype {arr.dtype} disagrees with the schema ({spec.dtype}); convert the frames "
            f"explicitly (e.g. images as uint8 0-255)",
            episode=episode,
            key=spec.name,
        )
    elif np.issubdtype(arr.dtype, np.floating):
        _check_finite(arr, episode=episode, key=spec.name)
    return arr


def check_actions(schema: StoreSchema, actions: object, *, episode: int | str) -> np.ndarray:
    arr = np.asarray(actions)
    if arr.ndim != 2 or arr.shape[1] != schema.action.dim:
        raise EpisodeValidationError(
            f"shape {tuple(arr.shape)} disagrees with the action space: expected (T, {schema.action.dim})",
            episode=episode,
            key="actions",
        )
    if not np.issubdtype(arr.dtype, np.floating):
        raise EpisodeValidationError(
            f"dtype {arr.dtype} is not a float dtype; actions are stored as float32", episode=episode,
            key="actions",
        )
    arr = arr.astype(np.float32, copy=False)
    _check_finite(arr, episode=episode, key="actions")
    return arr


def check_episode(
    schema: StoreSchema,
    obs: Mapping[str, object],
    actions: object,
    *,
    episode: int | str,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Validate a whole episode; returns arrays ready to write (stored dtypes, contiguous)."""
    if not isinstance(obs, Mapping):
        raise EpisodeValidationError(f"obs must be a dict of arrays, got {type(obs).__name__}", episode=episode)
    missing = [k for k in schema.obs_keys if k not in obs]
    if missing:
        raise EpisodeValidationError(
            f"observation key(s) {missing} missing (schema keys: {schema.obs_keys})",
            episode=episode,
            key=missing[0],
        )
    unknown = sorted(set(obs) - set(schema.obs_keys))
    if unknown:
        raise EpisodeValidationError(
            f"observation key(s) {unknown} are not in the schema (schema keys: {schema.obs_keys}); "
            "drop them or create the store with them",
            episode=episode,
            key=unknown[0],
        )
    act = check_actions(schema, actions, episode=episode)
    if len(act) == 0:
        raise EpisodeValidationError("the episode is empty (0 steps); nothing to save", episode=episode,
                                     key="actions")
    out: dict[str, np.ndarray] = {}
    for spec in schema.obs:
        arr = check_key_array(spec, obs[spec.name], episode=episode)
        if len(arr) != len(act):
            raise EpisodeValidationError(
                f"has {len(arr)} steps but actions have {len(act)}; every key needs one entry per step",
                episode=episode,
                key=spec.name,
            )
        out[spec.name] = np.ascontiguousarray(arr)
    return out, np.ascontiguousarray(act)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a store, located as precisely as we can."""

    message: str
    episode: int | None = None
    key: str | None = None

    def __str__(self) -> str:
        where = []
        if self.episode is not None:
            where.append(f"episode {self.episode}")
        if self.key is not None:
            where.append(f"key '{self.key}'")
        return (", ".join(where) + ": " if where else "") + self.message


def find_problems(store: EpisodeStore) -> list[Problem]:
    """Every problem in a store: layout, index, arrays and each committed episode's data."""
    problems: list[Problem] = []
    schema = store.schema
    if store.uncommitted_steps and store.active_writer is None:  # a live writer's append is not a problem
        problems.append(
            Problem(
                f"{store.uncommitted_steps} uncommitted steps after the last committed episode (an append "
                "was interrupted); run `robot-offrl data repair` to drop them"
            )
        )
    if store.location.local_path is not None and store.location.local_path.parent.name.endswith(STAGING_SUFFIX):
        problems.append(Problem("this is the incomplete store of a build in progress or interrupted (a staging "
                                "folder); use the final path once the build has finished"))
    for path in store.location.leftover_temp_files():
        problems.append(Problem(f"leftover temp file {path} from an interrupted write; `data repair` removes it"))
    expected_start = 0
    for meta in store.episodes:
        if meta.length <= 0:
            problems.append(Problem("the episode is empty (0 steps)", meta.index))
        if meta.start != expected_start:
            problems.append(
                Problem(f"starts at step {meta.start} but the previous episode ends at {expected_start}", meta.index)
            )
        expected_start = meta.start + meta.length
    unreadable: set[int] = set()
    # A store written before dense chunks may lack all-zero chunks legitimately: ``find_warnings``.
    for key, chunk, episodes in store.missing_chunks() if store.dense_chunks else []:
        unreadable.update(episodes)
        label = "episode" if len(episodes) == 1 else "episodes"
        problems.append(
            Problem(
                f"{label} {', '.join(map(str, episodes))}, key '{key}': chunk file {chunk} is missing (committed "
                "data lost; zarr would read it as zeros); restore from a backup or delete the episode(s)"
            )
        )
    for meta in store.episodes:
        if meta.index in unreadable:
            continue
        try:
            with warnings.catch_warnings():  # a pre-dense store's missing chunks: said once, by find_warnings
                warnings.simplefilter("ignore", SparseChunksWarning)
                episode = store.read_episode(meta.index)
        except StoreError as err:  # a chunk that does not decode names its episode(s) and key itself
            problems.append(Problem(str(err).removeprefix(f"{store.location}: ")))
            continue
        except Exception as err:  # a chunk that does not decode: name it instead of crashing
            problems.append(Problem(f"data cannot be read ({type(err).__name__}: {err})", meta.index))
            continue
        try:
            check_episode(schema, episode.obs, episode.actions, episode=meta.index)
        except EpisodeValidationError as err:
            problems.append(Problem(err.detail, meta.index, err.key))
    return problems


def find_warnings(store: EpisodeStore) -> list[str]:
    """Doubts that are not failures: the missing chunks of a store written before dense chunks."""
    from robot_offrl.data.store import sparse_chunks_message

    if store.dense_chunks or not store.missing_chunks():
        return []
    return [sparse_chunks_message(store).removeprefix(f"{store.location}: ")]
