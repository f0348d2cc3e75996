"""Errors raised by the episode store.

They all derive from ``StoreError`` (a ``UserError``) so the command line prints one clear line, and each
message names the store, episode and key involved and says what to do about it.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator

from robot_offrl.errors import UserError


class StoreError(UserError):
    """Anything wrong with an episode store or the data offered to it."""


class StoreNotFoundError(StoreError, FileNotFoundError):
    """The path or URL holds no episode store."""


class StoreExistsError(StoreError, FileExistsError):
    """Creating a store where one (or any other file) already exists."""


class StoreCorruptError(StoreError):
    """The store's metadata cannot be parsed or contradicts itself."""


class StoreVersionError(StoreError):
    """The store's format version is newer than this code, or has no migration path."""


class StoreReadOnlyError(StoreError):
    """A write was attempted on a store opened with ``mode="r"``."""


class StoreLockedError(StoreError):
    """Another writer holds the store's write lock (or took over this writer's expired lease)."""


class StoreWriteError(StoreError):
    """The filesystem refused a write (read-only, permissions, disk full); committed data is intact."""


class SchemaError(StoreError, ValueError):
    """A schema description (keys, action space) is malformed, or two schemas disagree."""


class EpisodeValidationError(StoreError, ValueError):
    """An episode's data disagrees with the schema; carries the episode and key it is about."""

    def __init__(self, message: str, *, episode: int | str | None = None, key: str | None = None) -> None:
        where = []
        if episode is not None:
            where.append(f"episode {episode}")
        if key is not None:
            where.append(f"key '{key}'")
        prefix = f"{', '.join(where)}: " if where else ""
        super().__init__(prefix + message)
        self.detail = message
        self.episode = episode
        self.key = key


class EpisodeIndexError(StoreError, IndexError):
    """An episode number that the store does not hold."""


# errno -> the reason printed; only conditions a user fixes outside the program are translated.
_WRITE_FAILURES = {
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
}


@contextlib.contextmanager
def translate_write_errors(where: str) -> Iterator[None]:
    """Turn a filesystem refusal inside a write into one StoreWriteError line naming the store.

    Every write path goes through this one helper so a read-only mount or a full disk reads the same
    everywhere. It only renames the error: callers order their writes so the committed state (the
    episode index) is replaced last and whole, which is why the message can promise nothing was lost.
    """
    try:
        yield
    except StoreError:
        raise
    except OSError as err:
        reason = _WRITE_FAILURES.get(err.errno or 0)
        if reason is None:
            raise
        detail = f" ({err.filename})" if err.filename else ""
        raise StoreWriteError(
            f"cannot write {where}: {reason}{detail}; committed episodes are unchanged"
        ) from err


class ChunkCorruptError(StoreCorruptError):
    """A committed chunk file is missing or does not decode.

    Raised by the chunk reader with the chunk and its step range; ``EpisodeStore`` re-raises it naming
    the episode(s) and key, because zarr would otherwise hand out the fill value (zeros) for a lost file.
    """

    def __init__(self, detail: str, *, chunk: int, steps: tuple[int, int], path: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.detail = detail
        self.chunk = chunk
        self.steps = steps
        self.path = path
