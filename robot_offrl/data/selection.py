"""Which episodes a run trains on: a plain value the window builder receives.

The algorithm's YAML states it (``algo.data_filter``, ``algo.sources``: BC-expert trains on expert
episodes, BC-all, IDQL and RISE on all); the data layer only knows episodes and their flags and
sources, never algorithm names, so this module imports nothing from algos/ or train/.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
