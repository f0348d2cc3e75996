"""RISE nearest-neighbour action augmentation: which (non-expert state, neighbour's action chunk) pairs to add.

In continuous spaces two trajectories almost never share a state, so offline RL has nothing to
stitch. For every non-expert step we look for steps of OTHER episodes whose state is within a
distance T and whose gripper is in the same state (open/closed), and hand the policy the pair
(this state, that step's action chunk). The pairs widen the behaviour policy's support around
the non-expert states; they go to the policy loss only, never to TD (their next state is wrong).

Search (``search``): ``separate`` (the reference's) takes up to k neighbours from the expert pool
AND up to k from the non-expert pool, so expert neighbours are not crowded out when most steps are
play; ``combined`` (legacy) takes k from the union. The first ``skip_first`` steps of non-expert
episodes are never queries (and, in separate search, never neighbours); the first
``skip_first_expert`` steps of expert episodes are never neighbours. Episode starts are where all
episodes look alike and their actions disagree most.

Features: the min/max-normalised low-dim state (each key in [-1, 1]) divided by sqrt(D), so the
threshold reads as an RMS per-dimension distance and does not grow with the number of keys. For
image tasks we use the low-dim keys that the store has as well (a frozen vision model without
pretrained weights, the only kind available offline, would give meaningless distances).

The index is exact (torch.cdist in blocks; datasets are small) and built once per dataset. It is
cached inside the store group under ``cache/neighbors/<key>``, keyed by a hash of the settings, the
selected episodes (uid, position, length, flags) and the normalisation statistics, so appending,
deleting or relabelling episodes or changing a setting rebuilds it; the newest few entries are kept.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from robot_offrl.data.stats import ACTIONS_KEY, NormStats
from robot_offrl.data.store import EpisodeStore
from robot_offrl.errors import ConfigError

CACHE_GROUP = "cache/neighbors"
CACHE_FORMAT = 1
# Entries kept side by side (e.g. the train split's index and an ablation's), newest first.
CACHE_ENTRIES = 4
GRIPPER_QPOS_KEY = "robot0_gripper_qpos"
GRIPPER_ACTION_NAME = "gripper"
# Distance-matrix entries per block: bounds memory (64 MiB of float32) for any dataset size.
BLOCK_ELEMENTS = 1 << 24


class NeighborCacheWarning(UserWarning):
    """The neighbour index could not be written beside the dataset; it was built in memory only."""


@dataclass(frozen=True)
class NeighborSettings:
    k: int = 15
    threshold: float = 0.1
    skip_first: int = 5
    feature_keys: tuple[str, ...] = ()
    gripper: str = "none"  # resolved mode: action | qpos | none
    neighbors_from: str = "all"  # all | expert
    search: str = "combined"  # separate: k per pool | combined: k from the union
    skip_first_expert: int = 0

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["feature_keys"] = list(self.feature_keys)
        # Settings added later are left out at their legacy values, so indexes cached before they existed
        # keep their cache keys.
        for name, legacy in LEGACY_SETTINGS.items():
            if d[name] == legacy:
                del d[name]
        return d


# Settings added after the first neighbour caches, at the values those caches were built with (the
# dataclass defaults above).
LEGACY_SETTINGS: dict[str, object] = {name: getattr(NeighborSettings, name) for name in ("search", "skip_first_expert")}
NEIGHBOR_SEARCHES = ("separate", "combined")
NEIGHBOR_POOLS = ("all", "expert")  # neighbors_from
GRIPPER_MODES = ("auto", "action", "qpos", "none")  # resolve_gripper_mode


@dataclass(frozen=True)
class NeighborIndex:
    """Pairs of global step indices: the policy learns ``actions[neighbor:]`` at ``obs[query]``."""

    query: np.ndarray  # (M,) int64
    neighbor: np.ndarray  # (M,) int64
    distance: np.ndarray  # (M,) float32
    key: str

    def __len__(self) -> int:
        return len(self.query)


def resolve_gripper_mode(store: EpisodeStore, mode: str) -> str:
    """``auto`` -> the action's gripper dim when it has one, else ``robot0_gripper_qpos``, else none."""
    names = store.schema.action.names
    if mode == "auto":
        if GRIPPER_ACTION_NAME in names:
            return "action"
        return "qpos" if GRIPPER_QPOS_KEY in store.schema.obs_keys else "none"
    if mode == "action" and GRIPPER_ACTION_NAME not in names:
        raise ConfigError(
            f"algo.nn_augment.gripper=action but the store's actions ({names}) have no '{GRIPPER_ACTION_NAME}' "
            "dimension; use gripper=qpos, auto or none"
        )
    if mode == "qpos" and GRIPPER_QPOS_KEY not in store.schema.obs_keys:
        raise ConfigError(
            f"algo.nn_augment.gripper=qpos but the store has no '{GRIPPER_QPOS_KEY}' observation; "
            "use gripper=action, auto or none"
        )
    if mode not in ("action", "qpos", "none"):
        raise ConfigError(f"algo.nn_augment.gripper must be auto, action, qpos or none; got {mode!r}")
    return mode


def default_feature_keys(store: EpisodeStore, obs_keys: Sequence[str]) -> tuple[str, ...]:
    """The policy's low-dim keys; for image-only policies every low-dim key the store has."""
    lowdim = set(store.schema.lowdim_keys())
    keys = [k for k in obs_keys if k in lowdim] or sorted(lowdim)
    if not keys:
        raise ConfigError(
            f"{store.url}: nearest-neighbour augmentation needs low-dim observation keys for its distances, "
            "and the store has none; disable algo.nn_augment"
        )
    return tuple(sorted(keys))


def _steps(store: EpisodeStore, episodes: Sequence[int]) -> dict[str, np.ndarray]:
    """Per step of ``episodes``: global index, owning episode, position within it, expert flag."""
    metas = [store.episode(i) for i in episodes]
    if not metas:
        return {name: np.zeros(0, dtype=np.int64) for name in ("step", "owner", "within", "expert")}
    return {
        "step": np.concatenate([np.arange(m.start, m.end) for m in metas]).astype(np.int64),
        "owner": np.concatenate([np.full(m.length, m.index) for m in metas]).astype(np.int64),
        "within": np.concatenate([np.arange(m.length) for m in metas]).astype(np.int64),
        "expert": np.concatenate([np.full(m.length, m.expert) for m in metas]).astype(bool),
    }


def state_features(store: EpisodeStore, steps: np.ndarray, keys: Sequence[str], stats: NormStats) -> np.ndarray:
    parts = []
    for key in keys:
        if key not in store.schema.lowdim_keys():
            raise ConfigError(
                f"algo.nn_augment.feature_keys: '{key}' is not a low-dim key of {store.url} "
                f"(low-dim keys: {store.schema.lowdim_keys()})"
            )
        values = store.read_steps(key, 0, store.num_steps).astype(np.float32, copy=False)[steps]
        parts.append(stats.normalize(key, values))
    features = np.concatenate(parts, axis=1).astype(np.float32)
    return features / np.sqrt(features.shape[1], dtype=np.float32)


def gripper_closed(store: EpisodeStore, steps: np.ndarray, within: np.ndarray, mode: str, stats: NormStats) -> np.ndarray:
    """Open/closed per step. ``action``: the command in force, i.e. the previous step's gripper action
    (> 0 closes); ``qpos``: finger opening below the midpoint of the dataset's range."""
    if mode == "none":
        return np.zeros(len(steps), dtype=bool)
    if mode == "action":
        dim = store.schema.action.names.index(GRIPPER_ACTION_NAME)
        actions = store.read_steps(ACTIONS_KEY, 0, store.num_steps)[:, dim]
        previous = np.where(within > 0, steps - 1, steps)
        return actions[previous] > 0.0
    qpos = store.read_steps(GRIPPER_QPOS_KEY, 0, store.num_steps).astype(np.float32, copy=False)[steps]
    width = np.abs(qpos).sum(axis=1)
    s = stats[GRIPPER_QPOS_KEY]
    midpoint = 0.5 * (np.abs(s.min).sum() + np.abs(s.max).sum())
    return width < midpoint


def cache_key(store: EpisodeStore, episodes: Sequence[int], settings: NeighborSettings, stats: NormStats) -> str:
    records = [
        [m.uid, m.start, m.length, m.expert, m.source] for m in (store.episode(i) for i in sorted(episodes))
    ]
    feature_stats = {k: stats[k].to_dict() for k in (*settings.feature_keys, ACTIONS_KEY)}
    blob = json.dumps(
        {
            "format": CACHE_FORMAT,
            "settings": settings.to_dict(),
            "episodes": records,
            "num_steps": store.num_steps,
            "generation": store.generation,
            "stats": feature_stats,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def candidate_pools(settings: NeighborSettings, expert: np.ndarray, within: np.ndarray) -> list[np.ndarray]:
    """Row masks of the pools searched, each for its own k nearest: one (combined) or expert + non-expert."""
    if settings.search not in NEIGHBOR_SEARCHES:
        raise ConfigError(f"algo.nn_augment.search must be one of {', '.join(NEIGHBOR_SEARCHES)}, got {settings.search!r}")
    expert_pool = expert & (within >= settings.skip_first_expert)
    if settings.neighbors_from == "expert":
        return [expert_pool]
    if settings.search == "combined":  # legacy: non-expert neighbours were never skipped
        return [expert_pool | ~expert]
    return [expert_pool, (~expert) & (within >= settings.skip_first)]


def _nearest(
    features: torch.Tensor,
    owner: torch.Tensor,
    closed: torch.Tensor,
    q_rows: np.ndarray,
    c_rows: np.ndarray,
    k: int,
    threshold: float,
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Up to k nearest candidates per query (other episode, same gripper state, distance < threshold)."""
    queries: list[np.ndarray] = []
    neighbors: list[np.ndarray] = []
    distances: list[np.ndarray] = []
    if not (len(q_rows) and len(c_rows)):
        return queries, neighbors, distances
    cand = features[c_rows]
    cand_owner, cand_closed = owner[c_rows], closed[c_rows]
    k = min(k, len(c_rows))
    block = max(1, BLOCK_ELEMENTS // len(c_rows))
    for lo in range(0, len(q_rows), block):
        rows = torch.from_numpy(q_rows[lo : lo + block])
        dist = torch.cdist(features[rows], cand)
        invalid = (owner[rows, None] == cand_owner[None]) | (closed[rows, None] != cand_closed[None])
        invalid |= dist >= threshold
        dist = dist.masked_fill(invalid, float("inf"))
        best, where = torch.topk(dist, k, dim=1, largest=False)
        found = torch.isfinite(best)
        queries.append(rows[:, None].expand_as(where)[found].numpy())
        neighbors.append(torch.from_numpy(c_rows)[where[found]].numpy())
        distances.append(best[found].numpy())
    return queries, neighbors, distances


def build_neighbor_index(
    store: EpisodeStore,
    episodes: Sequence[int],
    settings: NeighborSettings,
    stats: NormStats,
    key: str = "",
) -> NeighborIndex:
    """Exact search: for each eligible non-expert step, up to k nearest steps of other episodes per pool."""
    table = _steps(store, episodes)
    steps, owner, within, expert = table["step"], table["owner"], table["within"], table["expert"]
    features = torch.from_numpy(state_features(store, steps, settings.feature_keys, stats))
    closed = torch.from_numpy(gripper_closed(store, steps, within, settings.gripper, stats))
    owner_t = torch.from_numpy(owner)
    q_rows = np.flatnonzero((~expert) & (within >= settings.skip_first))
    queries, neighbors, distances = [], [], []
    for pool in candidate_pools(settings, expert, within):
        found = _nearest(features, owner_t, closed, q_rows, np.flatnonzero(pool), settings.k, settings.threshold)
        queries += found[0]
        neighbors += found[1]
        distances += found[2]
    if queries:
        q = steps[np.concatenate(queries)]
        n = steps[np.concatenate(neighbors)]
        d = np.concatenate(distances).astype(np.float32)
    else:
        q = n = np.zeros(0, dtype=np.int64)
        d = np.zeros(0, dtype=np.float32)
    return NeighborIndex(q.astype(np.int64), n.astype(np.int64), d, key)


def _cache_root(store: EpisodeStore, create: bool) -> Any | None:
    import zarr

    zstore = store.location.zarr_store(read_only=not create)
    try:
        return zarr.open_group(store=zstore, path=CACHE_GROUP, mode="a" if create else "r")
    except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError):
        return None


def _entry_name(key: str) -> str:
    return key[:24]


def _read_cache(store: EpisodeStore, key: str) -> NeighborIndex | None:
    try:
        root = _cache_root(store, create=False)
        if root is None or _entry_name(key) not in root:
            return None
        entry = root[_entry_name(key)]
        if entry.attrs.get("key") != key:
            return None
        arrays = [np.asarray(entry[name][:]) for name in ("query", "neighbor", "distance")]
    except (KeyError, OSError, ValueError):
        return None  # an unreadable or partial cache entry is simply rebuilt
    return NeighborIndex(arrays[0].astype(np.int64), arrays[1].astype(np.int64), arrays[2].astype(np.float32), key)


def _prune(root: Any, keep: int) -> None:
    """Drop all but the ``keep`` most recently written entries (old settings, old episode sets)."""
    entries = sorted(
        ((float(group.attrs.get("written_at", 0.0)), name) for name, group in root.groups()), reverse=True
    )
    for _, name in entries[keep:]:
        del root[name]


def _write_cache(store: EpisodeStore, index: NeighborIndex, settings: NeighborSettings) -> bool:
    try:
        root = _cache_root(store, create=True)
        assert root is not None
        entry = root.require_group(_entry_name(index.key))
        entry.attrs.put({"key": "", "settings": settings.to_dict()})
        for name, values in (("query", index.query), ("neighbor", index.neighbor), ("distance", index.distance)):
            entry.create_array(name, data=values, overwrite=True)
        # The key goes in last: a crash mid-write leaves an entry that no lookup accepts.
        entry.attrs.put(
            {"key": index.key, "settings": settings.to_dict(), "num_pairs": len(index), "written_at": time.time()}
        )
        _prune(root, CACHE_ENTRIES)
    except (OSError, ValueError) as err:
        warnings.warn(
            f"{store.url}: could not cache the neighbour index beside the dataset ({err}); it will be rebuilt "
            "next time",
            NeighborCacheWarning,
            stacklevel=3,
        )
        return False
    return True


def load_or_build_neighbor_index(
    store: EpisodeStore,
    episodes: Sequence[int],
    settings: NeighborSettings,
    stats: NormStats,
    write_cache: bool = True,
) -> tuple[NeighborIndex, bool]:
    """The index for these episodes and settings, and whether it came from the store's cache."""
    key = cache_key(store, episodes, settings, stats)
    cached = _read_cache(store, key)
    if cached is not None:
        return cached, True
    index = build_neighbor_index(store, episodes, settings, stats, key)
    if write_cache:
        _write_cache(store, index, settings)
    return index, False
