"""Parse episode selections such as ``0,3-5`` (the CLI's ``--episodes``)."""

from __future__ import annotations

from robot_offrl.data.errors import EpisodeIndexError


def parse_episode_ranges(text: str, num_episodes: int | None = None) -> list[int]:
    """Sorted, de-duplicated indices; ``a-b`` is inclusive. Checks bounds when ``num_episodes`` is given."""
    if not isinstance(text, str) or not text.strip():
        raise EpisodeIndexError("episode selection is empty; use e.g. --episodes 0,3-5")
    out: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise EpisodeIndexError(f"episode selection {text!r} has an empty item; use e.g. 0,3-5")
        lo_text, sep, hi_text = part.partition("-")
        try:
            lo = int(lo_text)
            hi = int(hi_text) if sep else lo
        except ValueError:
            raise EpisodeIndexError(
                f"episode selection item {part!r} is not a number or range (e.g. 3 or 3-5)"
            ) from None
        if lo < 0 or hi < lo:
            raise EpisodeIndexError(f"episode range {part!r} must be ascending, non-negative (e.g. 3-5)")
        out.update(range(lo, hi + 1))
    indices = sorted(out)
    if num_episodes is not None and indices and indices[-1] >= num_episodes:
        raise EpisodeIndexError(
            f"episode {indices[-1]} does not exist (the store has {num_episodes} episodes, "
            f"0..{num_episodes - 1})"
        )
    return indices
