"""Parse episode selections such as ``0,3-5`` (the CLI's ``--episodes``)."""

from __future__ import annotations

from robot_offrl.data.errors import EpisodeIndexError

# Without a store to check against, a selection may name at most this many episodes: the indices
# are materialised, and ``0-99999999999999`` must be an error, not the OOM killer.
MAX_SELECTED = 1 << 24


def parse_episode_ranges(text: str, num_episodes: int | None = None) -> list[int]:
    """Sorted, de-duplicated indices; ``a-b`` is inclusive. Checks bounds when ``num_episodes`` is given.

    Every item is checked against the bound before any range is expanded, so memory stays
    proportional to the store's episode count whatever numbers are typed.
    """
    if not isinstance(text, str) or not text.strip():
        raise EpisodeIndexError("episode selection is empty; use e.g. --episodes 0,3-5")
    items: list[tuple[int, int]] = []
    named = 0
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
        if num_episodes is not None and hi >= num_episodes:
            raise EpisodeIndexError(
                f"episode {hi} does not exist (the store has {num_episodes} episodes"
                + (f", 0..{num_episodes - 1}" if num_episodes else "")
                + f"; selection item {part!r})"
            )
        items.append((lo, hi))
        named += hi - lo + 1
        if num_episodes is None and named > MAX_SELECTED:
            raise EpisodeIndexError(f"episode selection {text!r} names more than {MAX_SELECTED} episodes")
    out: set[int] = set()
    for lo, hi in items:
        out.update(range(lo, hi + 1))
    return sorted(out)
