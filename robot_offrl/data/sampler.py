"""Training windows over an episode store (docs/contracts.md, "Training windows").

Item ``i`` is either a base window at step t of an episode, or (with RISE augmentation) a
neighbour pair: the window at a non-expert step with the action chunk of a near-by step of
another episode, flagged ``augmented`` so the agent keeps it out of TD.

Window at t: observations t-To+1..t (padded at the episode start by repeating step 0), actions
t..t+Tp-1 (padded at the end by repeating the last action), reward = the episode's expert flag,
next_obs = the window at t+n, n = ``td_steps`` (1 unless the critic scores n actions of the chunk),
clamped to the last step, whose next window is its own (absorbing state). With ``terminal="done"`` a
window whose n steps reach the episode's end is marked done = 1 instead, and ``reward_steps`` counts
the rewards it collects before that end (n otherwise). A window never crosses an episode.

Low-dim observations and actions come out normalised to [-1, 1] with the store's min/max
statistics (constant dims map to 0); images stay uint8 and are scaled in the encoder.

Reads are vectorised per batch (``__getitems__``): low-dim keys and actions always live in RAM
(they are small and must be normalised anyway), images either in RAM (``cache_in_ram``) or read
the store per batch, each chunk decoded once. Every read goes through the store's checked readers, so
a lost or garbage chunk stops training with an error naming the episode and key instead of feeding it
zeros. The store is reopened lazily in each DataLoader worker process.

Everything here takes plain values (keys, horizons, an ``EpisodeSelection``); reading them from a
training config is the trainer's job (``robot_offrl.train.windows.build_window_dataset``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from robot_offrl.data.errors import SchemaError
from robot_offrl.data.neighbors import NeighborIndex
from robot_offrl.data.schema import StoreSchema
from robot_offrl.data.selection import EpisodeSelection, select_episodes
from robot_offrl.data.stats import ACTIONS_KEY, NormStats
from robot_offrl.data.store import EpisodeStore
from robot_offrl.errors import ConfigError
from robot_offrl.models.obs_info import ObsInfo

# "auto" keeps images in RAM when they need less than this.
AUTO_IMAGE_CACHE_BYTES = 2 << 30
Item = dict[str, Any]
# The batch dict of docs/contracts.md, stated once: groups keyed by observation key, then flat
# per-window values with the dtype they are handed to the algorithms in.
OBS_GROUPS = ("obs", "next_obs")
FLAT_KEYS: dict[str, type] = {
    "actions": np.float32, "reward": np.float32, "reward_steps": np.float32, "done": np.float32, "augmented": np.bool_,
}


def check_obs_keys(store: EpisodeStore, obs_keys: Sequence[str] | None) -> list[str]:
    """The requested keys (default: every low-dim and rgb key), each checked against the store."""
    schema = store.schema
    if obs_keys is None or len(obs_keys) == 0:
        keys = schema.lowdim_keys() + schema.image_keys()
        keys = [k for k in keys if schema.key(k).kind in ("lowdim", "rgb")]
    else:
        keys = list(obs_keys)
    for key in keys:
        if key not in schema.obs_keys:
            raise ConfigError(
                f"observation key '{key}' is not in the store {store.url} (it has {schema.obs_keys}); "
                "fix task.lowdim_keys / task.image_keys"
            )
        if schema.key(key).kind not in ("lowdim", "rgb"):
            raise ConfigError(f"observation key '{key}' is {schema.key(key).kind}; the encoders take lowdim and rgb")
    if not keys:
        raise ConfigError(f"{store.url}: the store has no low-dim or rgb observation keys to train on")
    return sorted(set(keys))


def obs_info_for(schema: StoreSchema, obs_keys: Sequence[str], obs_horizon: int, pred_horizon: int) -> ObsInfo:
    """The networks' view of a schema: what the trainer builds from a store and the runtime from schema.json."""
    lowdim, rgb = {}, {}
    for key in obs_keys:
        try:
            spec = schema.key(key)
        except SchemaError as err:
            raise ConfigError(f"observation key '{key}' is not in the schema ({schema.obs_keys})") from err
        if spec.kind == "lowdim":
            lowdim[key] = int(spec.shape[0])
        elif spec.kind == "rgb":
            rgb[key] = (int(spec.shape[0]), int(spec.shape[1]), int(spec.shape[2]))
        else:
            raise ConfigError(f"observation key '{key}' is {spec.kind}; the encoders take lowdim and rgb")
    return ObsInfo(lowdim=lowdim, rgb=rgb, obs_horizon=obs_horizon, pred_horizon=pred_horizon)


class WindowDataset(Dataset[Item]):
    def __init__(
        self,
        store: EpisodeStore | str,
        *,
        obs_keys: Sequence[str] | None = None,
        obs_horizon: int = 2,
        pred_horizon: int = 16,
        episodes: Sequence[int] | None = None,
        selection: EpisodeSelection | None = None,
        split: str | None = None,
        terminal: str = "absorbing",
        td_steps: int = 1,
        norm_stats: NormStats | None = None,
        cache_in_ram: bool | str = "auto",
        neighbors: NeighborIndex | None = None,
        max_augmented_fraction: float = 0.5,
        seed: int = 0,
    ) -> None:
        if not isinstance(store, EpisodeStore):
            store = EpisodeStore.open(store, mode="r")
        for name, value in (("obs_horizon", obs_horizon), ("pred_horizon", pred_horizon)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"policy.{name} must be a positive integer, got {value!r}")
        if terminal not in ("absorbing", "done"):
            raise ConfigError(f"critic.terminal must be absorbing or done, got {terminal!r}")
        if isinstance(td_steps, bool) or not isinstance(td_steps, int) or not 1 <= td_steps <= pred_horizon:
            raise ConfigError(
                f"critic.action_steps must be an integer in [1, pred_horizon={pred_horizon}], got {td_steps!r}"
            )
        if cache_in_ram not in (True, False, "auto"):
            raise ConfigError(f"trainer.cache_in_ram must be auto, true or false; got {cache_in_ram!r}")
        self._store: EpisodeStore | None = store
        self._pid = os.getpid()
        self.url = store.url
        self.schema = store.schema
        self.obs_horizon = obs_horizon
        self.pred_horizon = pred_horizon
        self.terminal = terminal
        self.td_steps = td_steps
        self.obs_keys = check_obs_keys(store, obs_keys)
        self.lowdim_keys = [k for k in self.obs_keys if self.schema.key(k).kind == "lowdim"]
        self.rgb_keys = [k for k in self.obs_keys if self.schema.key(k).kind == "rgb"]
        self.episodes = select_episodes(store, selection or EpisodeSelection(), episodes, split)
        self.norm_stats = norm_stats if norm_stats is not None else store.norm_stats()
        self._index_steps(store)
        self._load_ram(store, cache_in_ram)
        self._set_augmentation(neighbors, max_augmented_fraction, seed)

    # -- construction ---------------------------------------------------------------------------
    def _index_steps(self, store: EpisodeStore) -> None:
        n = store.num_steps
        self._step_start = np.zeros(n, dtype=np.int64)
        self._step_end = np.zeros(n, dtype=np.int64)
        self._step_expert = np.zeros(n, dtype=np.float32)
        self._step_episode = np.full(n, -1, dtype=np.int64)
        for m in store.episodes:
            sl = slice(m.start, m.end)
            self._step_start[sl], self._step_end[sl] = m.start, m.end
            self._step_expert[sl] = float(m.expert)
            self._step_episode[sl] = m.index
        self._base_steps = np.concatenate(
            [np.arange(store.episode(i).start, store.episode(i).end) for i in self.episodes]
        ).astype(np.int64)

    def _load_ram(self, store: EpisodeStore, cache_in_ram: bool | str) -> None:
        n = store.num_steps
        self._ram: dict[str, np.ndarray] = {}
        for key in self.lowdim_keys:
            raw = store.read_steps(key, 0, n).astype(np.float32, copy=False)
            self._ram[key] = np.asarray(self.norm_stats.normalize(key, raw), dtype=np.float32)
        raw_actions = store.read_steps(ACTIONS_KEY, 0, n)
        self._actions = np.asarray(self.norm_stats.normalize(ACTIONS_KEY, raw_actions), dtype=np.float32)
        image_bytes = sum(n * int(np.prod(self.schema.key(k).shape)) for k in self.rgb_keys)
        self.images_in_ram = cache_in_ram is True or (cache_in_ram == "auto" and image_bytes <= AUTO_IMAGE_CACHE_BYTES)
        if self.images_in_ram:
            for key in self.rgb_keys:
                self._ram[key] = store.read_steps(key, 0, n)

    def _set_augmentation(self, neighbors: NeighborIndex | None, max_fraction: float, seed: int) -> None:
        if neighbors is None or len(neighbors) == 0:
            self._aug_query = self._aug_neighbor = np.zeros(0, dtype=np.int64)
            return
        keep = np.isin(neighbors.query, self._base_steps)
        query, neighbor = neighbors.query[keep], neighbors.neighbor[keep]
        if not 0.0 < max_fraction <= 1.0:
            raise ConfigError(f"algo.nn_augment.max_fraction must be in (0, 1] (1: no cap), got {max_fraction}")
        cap = len(query) if max_fraction == 1.0 else int(max_fraction / (1.0 - max_fraction) * len(self._base_steps))
        if len(query) > cap:  # deterministic subsample, so every worker and every resume agrees
            chosen = np.sort(np.random.default_rng(seed).choice(len(query), cap, replace=False))
            query, neighbor = query[chosen], neighbor[chosen]
        self._aug_query, self._aug_neighbor = query.astype(np.int64), neighbor.astype(np.int64)

    # -- facts the trainer needs ----------------------------------------------------------------
    @property
    def num_base(self) -> int:
        return len(self._base_steps)

    @property
    def num_augmented(self) -> int:
        return len(self._aug_query)

    def __len__(self) -> int:
        return self.num_base + self.num_augmented

    @property
    def action_dim(self) -> int:
        return self.schema.action.dim

    @property
    def obs_info(self) -> ObsInfo:
        return obs_info_for(self.schema, self.obs_keys, self.obs_horizon, self.pred_horizon)

    def base_windows(self) -> dict[str, np.ndarray]:
        """Per non-augmented window, in item order: global step, episode index, step within it, expert flag.

        Analyses that score every window (e.g. a critic's value along episodes) need this mapping
        for whole arrays at once; ``locate`` answers one item at a time.
        """
        steps = self._base_steps.copy()
        return {"step": steps, "episode": self._step_episode[steps], "within": steps - self._step_start[steps],
                "expert": self._step_expert[steps] > 0.5}

    def locate(self, i: int) -> tuple[int, int, int | None]:
        """(episode index, step within it, neighbour's global step or None) of item ``i``."""
        self._check_items(np.asarray([i]))
        g, neighbor = (
            (int(self._base_steps[i]), None)
            if i < self.num_base
            else (int(self._aug_query[i - self.num_base]), int(self._aug_neighbor[i - self.num_base]))
        )
        return int(self._step_episode[g]), int(g - self._step_start[g]), neighbor

    # -- reading --------------------------------------------------------------------------------
    def _zarr_store(self) -> EpisodeStore:
        """This process's store handle: a DataLoader worker opens its own, never the parent's."""
        if self._store is None or self._pid != os.getpid():
            self._store = EpisodeStore.open(self.url, mode="r")
            self._pid = os.getpid()
        return self._store

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_store"] = None
        return state

    def _read(self, key: str, index: np.ndarray) -> np.ndarray:
        if key in self._ram:
            return self._ram[key][index]
        flat = index.reshape(-1)
        unique, inverse = np.unique(flat, return_inverse=True)
        values = self._zarr_store().read_at(key, unique)
        return values[inverse].reshape(*index.shape, *values.shape[1:])

    def _check_items(self, items: np.ndarray) -> None:
        if len(items) and (items.min() < 0 or items.max() >= len(self)):
            raise IndexError(f"window index out of range 0..{len(self) - 1}: {items.min()}..{items.max()}")

    def gather(self, indices: Sequence[int] | np.ndarray) -> dict[str, Any]:
        """Stacked numpy batch for item indices (the vectorised core of every read)."""
        items = np.asarray(indices, dtype=np.int64).reshape(-1)
        self._check_items(items)
        is_aug = items >= self.num_base
        base_i = np.where(is_aug, 0, items)
        aug_i = np.where(is_aug, items - self.num_base, 0)
        g = np.where(is_aug, self._aug_query[aug_i] if self.num_augmented else 0, self._base_steps[base_i])
        start, end = self._step_start[g], self._step_end[g]
        history = np.arange(-self.obs_horizon + 1, 1)
        obs_idx = np.maximum(g[:, None] + history, start[:, None])
        g_next = np.minimum(g + self.td_steps, end - 1)  # the last step bootstraps from its own window
        next_idx = np.maximum(g_next[:, None] + history, start[:, None])
        source = np.where(is_aug, self._aug_neighbor[aug_i] if self.num_augmented else 0, g)
        act_idx = np.minimum(source[:, None] + np.arange(self.pred_horizon), self._step_end[source][:, None] - 1)
        both = np.concatenate([obs_idx, next_idx], axis=1)
        obs: dict[str, np.ndarray] = {}
        next_obs: dict[str, np.ndarray] = {}
        for key in self.obs_keys:
            values = self._read(key, both)
            obs[key], next_obs[key] = values[:, : self.obs_horizon], values[:, self.obs_horizon :]
        ends = self.terminal == "done"
        reaches_end = g + self.td_steps >= end
        rewards_left = end - g if ends else np.full_like(g, self.td_steps)
        return {
            "obs": obs,
            "actions": self._actions[act_idx],
            "reward": self._step_expert[g],
            "reward_steps": np.minimum(self.td_steps, rewards_left).astype(np.float32),
            "next_obs": next_obs,
            "done": (reaches_end & ends).astype(np.float32),
            "augmented": is_aug,
        }

    def __getitem__(self, i: int) -> Item:
        return _split(self.gather([i]), 1)[0]

    def __getitems__(self, indices: list[int]) -> list[Item]:
        """DataLoader's batched fetch: one read per key for the whole batch, then per-item views."""
        return _split(self.gather(indices), len(indices))

    def get_batch(self, indices: Sequence[int] | np.ndarray, device: torch.device | str = "cpu") -> dict[str, Any]:
        """The batch dict of docs/contracts.md as tensors on ``device``, without a DataLoader."""
        return to_device(_as_tensors(self.gather(indices)), device)


def _split(batch: Mapping[str, Any], n: int) -> list[Item]:
    return [
        {**{g: {k: v[j] for k, v in batch[g].items()} for g in OBS_GROUPS}, **{k: batch[k][j] for k in FLAT_KEYS}}
        for j in range(n)
    ]


def _as_tensors(batch: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        g: {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch[g].items()} for g in OBS_GROUPS
    }
    out.update({k: torch.from_numpy(np.ascontiguousarray(batch[k], dtype=dtype)) for k, dtype in FLAT_KEYS.items()})
    return out


def collate_windows(items: Sequence[Item]) -> dict[str, Any]:
    """DataLoader collate_fn: stack items into the batch dict of docs/contracts.md (torch tensors)."""
    if not items:
        raise ValueError("cannot collate an empty batch")
    keys = list(items[0]["obs"])
    stacked: dict[str, Any] = {g: {k: np.stack([it[g][k] for it in items]) for k in keys} for g in OBS_GROUPS}
    stacked.update({k: np.stack([np.asarray(it[k], dtype=dtype) for it in items]) for k, dtype in FLAT_KEYS.items()})
    return _as_tensors(stacked)


def to_device(batch: Mapping[str, Any], device: torch.device | str) -> dict[str, Any]:
    """Move a (nested) batch dict onto a device; images stay uint8 until the encoder."""
    return {
        k: to_device(v, device) if isinstance(v, Mapping) else v.to(device, non_blocking=True)
        for k, v in batch.items()
    }
