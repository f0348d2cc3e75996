"""Does this store fit this training config? Checked before any window or network is built.

Both mistakes below used to train to completion: a Can policy on Lift data (the observation keys
happen to match), or a critic on a store where no episode is flagged expert, so every reward is 0, Q
learns the constant 0 and the candidate selection it was trained for ranks nothing.
"""

from __future__ import annotations

from omegaconf import DictConfig

from robot_offrl.algos.config import AlgoConfig
from robot_offrl.config import config_dir
from robot_offrl.data import EpisodeStore
from robot_offrl.data.selection import select_episodes
from robot_offrl.errors import ConfigError


def _known_tasks() -> dict[str, str]:
    """{alias (lower case): task config name} for every configs/task/*.yaml: its name and env_name."""
    from omegaconf import OmegaConf

    aliases: dict[str, str] = {}
    for path in sorted((config_dir() / "task").glob("*.yaml")):
        raw = OmegaConf.load(path)
        name = str(raw.get("name", path.stem))
        for alias in (name, raw.get("env_name")):
            if alias:
                aliases[str(alias).lower()] = name
    return aliases


def check_task(cfg: DictConfig, store: EpisodeStore) -> None:
    """Refuse when the store was recorded for another known task than ``task=`` names.

    A store's task is a task name (sim collect) or a robosuite env name (robomimic import); a task
    this package has no config for (a lab's own hardware task) cannot be compared and is let through.
    """
    recorded = str(store.schema.task or "").strip()
    wanted = str(cfg.task.name)
    own = {wanted.lower(), str(cfg.task.get("env_name") or "").lower()}
    if not recorded or recorded.lower() in own:
        return
    other = _known_tasks().get(recorded.lower())
    if other is not None and other != wanted:
        raise ConfigError(
            f"{store.url} was recorded for task {recorded!r} but the config trains task={wanted}; "
            f"use task={other} (or another store)"
        )


def check_rewards(algo: AlgoConfig, store: EpisodeStore) -> None:
    """A critic needs at least one expert episode among its training episodes: rewards are the flag."""
    if not algo.use_critic:
        return
    chosen = select_episodes(store, algo.episodes)
    if not any(store.episode(i).expert for i in chosen):
        raise ConfigError(
            f"algo={algo.name} trains a critic on flag rewards (1 on expert episodes) but none of the {len(chosen)} "
            f"training episodes in {store.url} is flagged expert, so there is nothing to reward; flag the "
            "expert episodes (`robot-offrl data flag`) or use algo=bc_all"
        )


def check_store_fits(cfg: DictConfig, store: EpisodeStore, algo: AlgoConfig) -> None:
    check_task(cfg, store)
    check_rewards(algo, store)
