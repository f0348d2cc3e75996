"""The training windows a run's config asks for: config in, ``WindowDataset`` out.

The data layer takes plain values (docs/contracts.md, "Training windows"); this module is where the
trainer reads them from its typed config, including which episodes the algorithm trains on
(``algo.data_filter`` / ``algo.sources``, as the ``EpisodeSelection`` of ``algo.episodes``) and the
RISE neighbour pairs. It lives in train/ so that data/ never reads algorithm config.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from robot_offrl.algos.config import AgentConfig
from robot_offrl.data.neighbors import (
    NeighborSettings,
    default_feature_keys,
    load_or_build_neighbor_index,
    resolve_gripper_mode,
)
from robot_offrl.data.sampler import WindowDataset, check_obs_keys
from robot_offrl.data.selection import select_episodes
from robot_offrl.data.stats import NormStats
from robot_offrl.data.store import EpisodeStore
from robot_offrl.typed_config import section


def build_window_dataset(
    store: EpisodeStore | str,
    cfg: Any,
    *,
    split: str | None = None,
    episodes: Sequence[int] | None = None,
    norm_stats: NormStats | None = None,
    augment: bool = True,
    write_neighbor_cache: bool = True,
) -> WindowDataset:
    """The training windows a whole config asks for (parsed here; the trainer calls ``build_windows``).

    Reads task.lowdim_keys / task.image_keys (empty: every key of the store), trainer.cache_in_ram,
    seed and the typed algo / policy / critic sections.
    """
    task = section(cfg, "task")
    return build_windows(
        store,
        AgentConfig.from_cfg(cfg),
        obs_keys=[*(task.get("lowdim_keys") or []), *(task.get("image_keys") or [])],
        cache_in_ram=section(cfg, "trainer").get("cache_in_ram", "auto"),
        seed=int(cfg.get("seed", 0) if hasattr(cfg, "get") else 0),
        split=split, episodes=episodes, norm_stats=norm_stats, augment=augment,
        write_neighbor_cache=write_neighbor_cache,
    )


def build_windows(
    store: EpisodeStore | str,
    agent: AgentConfig,
    *,
    obs_keys: Sequence[str] = (),
    cache_in_ram: bool | str = "auto",
    seed: int = 0,
    split: str | None = None,
    episodes: Sequence[int] | None = None,
    norm_stats: NormStats | None = None,
    augment: bool = True,
    write_neighbor_cache: bool = True,
) -> WindowDataset:
    """The training windows of an already-parsed agent config, with the RISE neighbour pairs when enabled.

    Uses policy.obs_horizon / pred_horizon, the algorithm's episode selection (``algo.episodes``),
    algo.nn_augment.*, critic.terminal and critic.action_steps. ``obs_keys`` empty: every key of the
    store. ``augment=False`` leaves the neighbour pairs out even when algo.nn_augment.enabled (e.g. for a
    validation set, whose loss should measure real windows only).
    """
    if not isinstance(store, EpisodeStore):
        store = EpisodeStore.open(store, mode="r")
    algo, policy, critic = agent.algo, agent.policy, agent.critic
    stats = norm_stats if norm_stats is not None else store.norm_stats()
    chosen = select_episodes(store, algo.episodes, episodes, split)
    keys = check_obs_keys(store, list(obs_keys) or None)
    neighbors = None
    aug = algo.nn_augment
    if aug.enabled and augment:
        settings = NeighborSettings(
            k=aug.k,
            threshold=aug.threshold,
            skip_first=aug.skip_first,
            feature_keys=tuple(sorted(aug.feature_keys)) if aug.feature_keys else default_feature_keys(store, keys),
            gripper=resolve_gripper_mode(store, aug.gripper),
            neighbors_from=aug.neighbors_from,
            search=aug.search,
            skip_first_expert=aug.skip_first_expert,
        )
        neighbors, _ = load_or_build_neighbor_index(store, chosen, settings, stats, write_cache=write_neighbor_cache)
    return WindowDataset(
        store,
        obs_keys=keys,
        obs_horizon=policy.obs_horizon,
        pred_horizon=policy.pred_horizon,
        episodes=chosen,
        split=None,
        terminal=critic.terminal,
        td_steps=critic.action_steps if algo.use_critic else 1,  # BC has no TD target to shape
        norm_stats=stats,
        cache_in_ram=cache_in_ram,
        neighbors=neighbors,
        max_augmented_fraction=aug.max_fraction,
        seed=int(seed),
    )
