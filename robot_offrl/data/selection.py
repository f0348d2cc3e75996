"""Which episodes a run trains on: a plain value the window builder receives.

The algorithm's YAML states it (``algo.data_filter``, ``algo.sources``: BC-expert trains on expert
episodes, BC-all, IDQL and RISE on all); the data layer only knows episodes and their flags and
sources, never algorithm names, so this module imports nothing from algos/ or train/ (the trainer builds
its windows in train/windows.py and hands a selection down).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from robot_offrl.data.store import EpisodeStore
from robot_offrl.errors import ConfigError

EPISODE_FILTERS = ("expert", "all", "sources")


@dataclass(frozen=True)
class EpisodeSelection:
    """``expert``: episodes flagged expert; ``all``: every episode; ``sources``: those whose source is listed."""

    data_filter: str = "all"
    sources: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.data_filter not in EPISODE_FILTERS:
            raise ConfigError(
                f"algo.data_filter must be one of {', '.join(EPISODE_FILTERS)}; got {self.data_filter!r}"
            )
        if self.sources is not None:
            if isinstance(self.sources, str) or not all(isinstance(s, str) for s in self.sources):
                raise ConfigError(f"algo.sources must be a list of strings, got {self.sources!r}")
            object.__setattr__(self, "sources", tuple(self.sources))
        if self.data_filter == "sources" and not self.sources:
            raise ConfigError("algo.data_filter is 'sources' but algo.sources lists none (e.g. [teleop, play])")

    @classmethod
    def of(cls, data_filter: str = "all", sources: Sequence[str] | None = None) -> EpisodeSelection:
        return cls(data_filter, tuple(sources) if sources is not None else None)

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
