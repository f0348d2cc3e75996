"""The training windows a run's config asks for: config in, ``WindowDataset`` out.

The data layer takes plain values (docs/contracts.md, "Training windows"); this module is where the
trainer reads them from its config sections, including which episodes the algorithm trains on
(``algo.data_filter`` / ``algo.sources`` as an ``EpisodeSelection``) and the RISE neighbour pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from robot_offrl.algos.config import AlgoConfig, CriticConfig, PolicyConfig, section
from robot_offrl.data.neighbors import (
    NeighborSettings,
    default_feature_keys,
    load_or_build_neighbor_index,
    resolve_gripper_mode,
)
from robot_offrl.data.sampler import WindowDataset, check_obs_keys
from robot_offrl.data.selection import EpisodeSelection, select_episodes
from robot_offrl.data.stats import NormStats
from robot_offrl.data.store import EpisodeStore


def episode_selection(algo: AlgoConfig) -> EpisodeSelection:
    """The episodes an algorithm config trains on, as the plain value the data layer takes."""
    return EpisodeSelection(algo.data_filter, tuple(algo.sources) if algo.sources else None)


def build_window_dataset(
    store: EpisodeStore | str,
    cfg: Any,
    *,
    selection: EpisodeSelection | None = None,
    split: str | None = None,
    episodes: Sequence[int] | None = None,
    norm_stats: NormStats | None = None,
    augment: bool = True,
    write_neighbor_cache: bool = True,
) -> WindowDataset:
    """The training windows a config asks for, with the RISE neighbour pairs when enabled.

    Reads task.lowdim_keys / task.image_keys (empty: every key of the store), policy.obs_horizon,
    policy.pred_horizon, algo.nn_augment.*, critic.terminal, critic.action_steps,
    trainer.cache_in_ram and seed. ``selection`` says which episodes (default: the config's
    algo.data_filter / algo.sources). ``augment=False`` leaves the neighbour pairs out even when
    algo.nn_augment.enabled (e.g. for a validation set, whose loss should measure real windows only).
    """
    if not isinstance(store, EpisodeStore):
        store = EpisodeStore.open(store, mode="r")
    algo = AlgoConfig.from_mapping(section(cfg, "algo"))
    policy = PolicyConfig.from_mapping(section(cfg, "policy"))
    critic = CriticConfig.from_mapping(section(cfg, "critic"))
    task = section(cfg, "task")
    keys = [*(task.get("lowdim_keys") or []), *(task.get("image_keys") or [])]
    cache = section(cfg, "trainer").get("cache_in_ram", "auto")
    seed = cfg.get("seed", 0) if hasattr(cfg, "get") else 0
    stats = norm_stats if norm_stats is not None else store.norm_stats()
    chosen = select_episodes(store, selection or episode_selection(algo), episodes, split)
    obs_keys = check_obs_keys(store, keys or None)
    neighbors = None
    aug = algo.nn_augment
    if aug.enabled and augment:
        settings = NeighborSettings(
            k=aug.k,
            threshold=aug.threshold,
            skip_first=aug.skip_first,
            feature_keys=tuple(sorted(aug.feature_keys)) if aug.feature_keys else default_feature_keys(store, obs_keys),
            gripper=resolve_gripper_mode(store, aug.gripper),
            neighbors_from=aug.neighbors_from,
            search=aug.search,
            skip_first_expert=aug.skip_first_expert,
        )
        neighbors, _ = load_or_build_neighbor_index(store, chosen, settings, stats, write_cache=write_neighbor_cache)
    return WindowDataset(
        store,
        obs_keys=obs_keys,
        obs_horizon=policy.obs_horizon,
        pred_horizon=policy.pred_horizon,
        episodes=chosen,
        split=None,
        terminal=critic.terminal,
        td_steps=critic.action_steps if algo.use_critic else 1,  # BC has no TD target to shape
        norm_stats=stats,
        cache_in_ram=cache,
        neighbors=neighbors,
        max_augmented_fraction=aug.max_fraction,
        seed=int(seed),
    )
