"""Which episodes a consumer reads, as a plain value: by expert flag, by source, or all of them.

The data layer knows episodes and their flags, not algorithms: the trainer turns its algorithm config
into an ``EpisodeSelection`` (train/windows.py) and hands it down, so adding an algorithm never
touches this package.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from robot_offrl.data.store import EpisodeStore
from robot_offrl.errors import ConfigError

# The episode filters a selection can name (``algo.data_filter`` in the training configs).
EPISODE_FILTERS = ("expert", "all", "sources")


@dataclass(frozen=True)
class EpisodeSelection:
    """``expert``: expert-flagged episodes; ``all``: every episode; ``sources``: those with a listed source."""

    data_filter: str = "all"
    sources: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.data_filter not in EPISODE_FILTERS:
            raise ConfigError(f"algo.data_filter must be expert, all or sources; got {self.data_filter!r}")
        if self.data_filter == "sources" and not self.sources:
            raise ConfigError("data_filter 'sources' needs a list of sources (algo.sources)")
        if self.sources is not None:
            object.__setattr__(self, "sources", tuple(str(s) for s in self.sources))

    def describe(self) -> str:
        return f"data_filter={self.data_filter}" + (f", sources={list(self.sources)}" if self.sources else "")


def select_episodes(
    store: EpisodeStore,
    selection: EpisodeSelection,
    episodes: Sequence[int] | None = None,
    split: str | None = None,
) -> list[int]:
    """Episode indices a selection takes, optionally within a split or a given list; none is an error."""
    if selection.data_filter == "expert":
        chosen = store.select_episodes(expert=True)
    elif selection.data_filter == "all":
        chosen = store.select_episodes()
    else:
        chosen = store.select_episodes(sources=selection.sources)
    if split is not None:
        in_split = set(store.split_indices(split))  # type: ignore[arg-type]
        chosen = [i for i in chosen if i in in_split]
    if episodes is not None:
        wanted = {store.episode(int(i)).index for i in episodes}
        chosen = [i for i in chosen if i in wanted]
    if not chosen:
        raise ConfigError(
            f"{store.url}: no episodes match {selection.describe()}" + (f" in split '{split}'" if split else "")
            + f" ({store.num_episodes} episodes in the store); flag some episodes as expert "
            "(`robot-offrl data flag`) or use algo.data_filter=all"
        )
    return chosen
