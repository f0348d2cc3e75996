"""The episode store: one zarr v3 group that every station writes through one writer and reads through one reader.

On disk (see docs/dataset.md)::

    STORE/zarr.json            root group; attributes: format, format_version, schema, created_by, ...
    STORE/obs/<key>/           (T_total, *shape) arrays, all episodes concatenated along time
    STORE/actions/             (T_total, A) float32
    STORE/index/zarr.json      the episode index: the commit record and the single source of truth

An append writes the arrays first and the index last. The index names how many steps are committed;
anything in the arrays past that is an interrupted append, ignored on open and cut by ``repair``.

A writable handle (``create``, ``open(..., "r+" | "a")``) holds the store's write lock (lock.py) from
open to ``close()``; a second writer gets StoreLockedError naming the first. Read-only handles take no
lock and never change anything on disk.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as _dt
import functools
import warnings
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from robot_offrl import __version__
from robot_offrl.data.backend import (
    OLD_SUFFIX,
    REBUILD_SUFFIX,
    Location,
    recover_interrupted_swap,
    remove_partial_store,
)
from robot_offrl.data.episode import Episode, EpisodeMeta, check_attrs_json, parse_index_records
from robot_offrl.data.errors import (
    ChunkCorruptError,
    EpisodeIndexError,
    SchemaError,
    StoreCorruptError,
    StoreError,
    StoreExistsError,
    StoreLockedError,
    StoreNotFoundError,
    StoreReadOnlyError,
    translate_write_errors,
)
from robot_offrl.data.fastread import ChunkReader
from robot_offrl.data.layout import (
    ACTIONS_ARRAY,
    INDEX_GROUP,
    chunk_keys,
    create_arrays,
    obs_path,
)
from robot_offrl.data.lock import (
    DEFAULT_LEASE_S,
    WriteLock,
    acquire_write_lock,
    active_writer,
    try_write_lock,
)
from robot_offrl.data.migrations import upgrade_attrs
from robot_offrl.data.schema import FORMAT_NAME, FORMAT_VERSION, StoreSchema, check_source, check_success
from robot_offrl.data.staging import staging_note
from robot_offrl.data.stats import ACTIONS_KEY, NormStats, compute_stats
from robot_offrl.data.validate import SparseChunksWarning, check_episode

Mode = Literal["r", "r+", "a"]
# Root attribute of stores whose every committed chunk has a file (zarr skips all-zero chunks unless
# told otherwise); without it a missing chunk may be an all-zero one written by an older version.
DENSE_CHUNKS_ATTR = "dense_chunks"
SplitName = Literal["train", "val"]


class UncommittedDataWarning(UserWarning):
    """The arrays hold steps past the last committed episode: an append was interrupted."""


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class EpisodeStore:
    """Reader and writer of one episode store. One writer at a time (enforced); any number of readers."""

    def __init__(
        self, location: Location, mode: Mode, *, durable: bool = True, lock: WriteLock | None = None
    ) -> None:
        # Use EpisodeStore.create / EpisodeStore.open; this only loads an existing, checked store.
        # A writable handle is given the write lock its opener took, and releases it on close() or
        # when it is garbage collected.
        if mode != "r" and lock is None:
            raise StoreError(f"{location}: a writable handle needs the store's write lock")
        self.location = location
        self.mode: Mode = mode
        self.durable = durable
        self.written_format_version = FORMAT_VERSION
        self._lock = lock
        self._release = weakref.finalize(self, lock.release) if lock is not None else None
        self.active_writer = None if lock is not None else active_writer(location)
        try:
            self._load()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ opening
    @classmethod
    def create(
        cls,
        path_or_url: str | Any,
        schema: StoreSchema,
        *,
        overwrite: bool = False,
        durable: bool = True,
        wait_s: float | None = None,
        lease_s: float = DEFAULT_LEASE_S,
        lock: WriteLock | None = None,
    ) -> EpisodeStore:
        """A new, empty store, opened for writing (holds the write lock until ``close()``).

        Refuses an existing path unless ``overwrite`` (which deletes it). ``wait_s``: how long to wait
        for another writer (default: the command's ``--wait``, else 0); ``lease_s``: lease lifetime on
        fsspec stores; ``lock``: a lock the caller already holds for this location (internal).
        """
        if not isinstance(schema, StoreSchema):
            raise SchemaError(f"schema must be a StoreSchema, got {type(schema).__name__}")
        location = Location.parse(path_or_url)
        held = acquire_write_lock(location, wait_s=wait_s, lease_s=lease_s) if lock is None else lock
        try:
            return cls._create_locked(location, schema, held, overwrite=overwrite, durable=durable)
        except BaseException:
            if lock is None:
                held.release()
            raise

    @classmethod
    def _create_locked(
        cls, location: Location, schema: StoreSchema, lock: WriteLock, *, overwrite: bool, durable: bool
    ) -> EpisodeStore:
        import zarr

        if location.exists() and not overwrite:
            raise StoreExistsError(
                f"{location}: already exists; open it with EpisodeStore.open(..., mode='r+') to add "
                "episodes, or pick another path"
            )
        attrs = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "schema": schema.to_dict(),
            "created_by": f"robot-offrl {__version__}",
            "created_at": _now(),
            DENSE_CHUNKS_ATTR: True,
        }
        created = False  # only a root this call made is ours to remove on failure
        try:
            with translate_write_errors(str(location)):
                store = location.zarr_store(read_only=False)
                root = zarr.open_group(store=store, mode="w" if overwrite else "w-", attributes=attrs)
                created = True
                create_arrays(root, schema.obs, schema.action.dim)
                root.create_group(INDEX_GROUP, attributes=_index_attrs([], 0, 0, 0))
                if durable:
                    keys = ["zarr.json", f"{INDEX_GROUP}/zarr.json", f"{ACTIONS_ARRAY}/zarr.json", "obs/zarr.json"]
                    keys += [f"{obs_path(k)}/zarr.json" for k in schema.obs_keys]
                    location.fsync_keys(keys)
        except BaseException as err:
            if created:  # half a skeleton (a full disk) is not a store; we hold its lock and made it
                remove_partial_store(location)
                raise
            if location.local_path is not None:  # an empty folder the failed create made, never a store
                with contextlib.suppress(OSError):
                    location.local_path.rmdir()
            if not overwrite and isinstance(err, Exception) and not isinstance(err, StoreError) and location.exists():
                raise StoreExistsError(
                    f"{location}: appeared while this store was being created (a writer that does not take "
                    "the lock made it); it was left untouched, pick another path"
                ) from err
            raise
        return cls(location, "r+", durable=durable, lock=lock)

    @classmethod
    def open(
        cls,
        path_or_url: str | Any,
        mode: Mode = "r",
        *,
        schema: StoreSchema | None = None,
        durable: bool = True,
        wait_s: float | None = None,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> EpisodeStore:
        """Open an existing store (``"r"``, ``"r+"``) or create-or-open (``"a"``, needs ``schema``).

        ``"r+"`` and ``"a"`` take the write lock first (waiting up to ``wait_s``, see ``create``) and
        only then finish an interrupted swap and read the index, so the snapshot a writer commits on
        top of is the latest one. ``"r"`` takes no lock and never changes anything on disk.
        """
        if mode not in ("r", "r+", "a"):
            raise StoreError(f"mode {mode!r} is not 'r', 'r+' or 'a'")
        location = Location.parse(path_or_url)
        if mode == "r":
            _finish_swap_for_reader(location)
            if not location.exists():
                raise StoreNotFoundError(f"{location}: no such file or directory (check the path or URL){staging_note(location)}")
            opened = cls(location, mode, durable=durable)
        else:
            lock = acquire_write_lock(location, wait_s=wait_s, lease_s=lease_s)
            try:
                opened = cls._open_locked(location, mode, lock, schema=schema, durable=durable)
            except BaseException:
                lock.release()
                raise
        if schema is not None:
            diffs = opened.schema.differences(schema)
            if diffs:
                opened.close()
                raise SchemaError(f"{location}: existing store has a different schema: {'; '.join(diffs)}")
        return opened

    @classmethod
    def _open_locked(
        cls, location: Location, mode: Mode, lock: WriteLock, *, schema: StoreSchema | None = None,
        durable: bool = True,
    ) -> EpisodeStore:
        """Writable open under a lock the caller holds (``open``, ``repair``, ``delete``)."""
        with translate_write_errors(str(location)):
            recover_interrupted_swap(location)
        if not location.exists():
            if mode == "a":
                if schema is None:
                    raise StoreNotFoundError(f"{location}: does not exist; pass schema= to create it")
                return cls._create_locked(location, schema, lock, overwrite=False, durable=durable)
            raise StoreNotFoundError(f"{location}: no such file or directory (check the path or URL){staging_note(location)}")
        return cls(location, "r+", durable=durable, lock=lock)

    def _load(self) -> None:
        import zarr

        where = str(self.location)
        raw_attrs = self.location.read_json("zarr.json").get("attributes") or {}
        attrs, written = upgrade_attrs(dict(raw_attrs), where)
        self.written_format_version = written
        try:
            self.schema = StoreSchema.from_dict(attrs["schema"])
        except KeyError as err:
            raise StoreCorruptError(f"{where}: root attributes lack the schema; the store is damaged") from err
        except SchemaError as err:
            raise StoreCorruptError(f"{where}: stored schema is invalid: {err}") from err
        index_json = self.location.read_json(f"{INDEX_GROUP}/zarr.json")
        try:
            self._root = zarr.open_group(store=self.location.zarr_store(read_only=self.mode == "r"), mode=self.mode)
        except Exception as err:  # zarr raises many types for damaged metadata
            raise StoreCorruptError(f"{where}: zarr cannot open the root group ({err})") from err
        if written != FORMAT_VERSION and self.mode != "r":
            with self._writing():
                self._root.attrs.put(attrs)
                self._sync(["zarr.json"])
        self._attrs = attrs
        self._load_index(index_json.get("attributes") or {})
        self._arrays: dict[str, Any] = {}
        for spec in self.schema.obs:
            self._arrays[spec.name] = self._open_array(obs_path(spec.name))
        self._arrays[ACTIONS_KEY] = self._open_array(ACTIONS_ARRAY)
        self._readers: dict[str, ChunkReader] = {}
        self._warned_sparse = False
        self._check_arrays()

    def _open_array(self, path: str) -> Any:
        import zarr

        try:
            # Write every chunk, even an all-zero one, so that a missing chunk file always means lost data.
            with zarr.config.set({"array.write_empty_chunks": True}):
                return self._root[path]
        except KeyError as err:
            raise StoreCorruptError(
                f"{self.location}: array '{path}' is missing although the schema lists it; the store is damaged"
            ) from err
        except Exception as err:
            raise StoreCorruptError(f"{self.location}: array '{path}' cannot be opened ({err})") from err

    def _load_index(self, index_attrs: Mapping[str, Any]) -> None:
        self._episodes, self._num_steps, self._next_uid, self._generation = parse_index_records(
            index_attrs, str(self.location)
        )
        end = self._episodes[-1].end if self._episodes else 0
        if end != self._num_steps:
            raise StoreCorruptError(
                f"{self.location}: the episode index says {self._num_steps} steps but its episodes end at {end}"
            )

    def _check_arrays(self) -> None:
        excess = 0
        for key, array in self._arrays.items():
            spec = None if key == ACTIONS_KEY else self.schema.key(key)
            want_shape = (self.schema.action.dim,) if spec is None else spec.shape
            want_dtype = "float32" if spec is None else spec.dtype
            if tuple(array.shape[1:]) != want_shape or str(array.dtype) != want_dtype:
                raise StoreCorruptError(
                    f"{self.location}: array '{key}' is {array.dtype}{list(array.shape[1:])} per step but the "
                    f"schema says {want_dtype}{list(want_shape)}"
                )
            if array.shape[0] < self._num_steps:
                raise StoreCorruptError(
                    f"{self.location}: array '{key}' holds {array.shape[0]} steps but {self._num_steps} are "
                    "committed; committed data is missing (restore from a backup)"
                )
            excess = max(excess, array.shape[0] - self._num_steps)
        self.uncommitted_steps = int(excess)
        if excess and self.active_writer is None:  # with a live writer it is simply its append in progress
            warnings.warn(
                f"{self.location}: ignoring {excess} uncommitted steps after the last committed episode "
                "(an append was interrupted); run `robot-offrl data repair` to remove them",
                UncommittedDataWarning,
                stacklevel=3,
            )

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # DataLoader workers get a fresh read-only handle instead of a copy of zarr's async state.
        return (_reopen_readonly, (self.location.url,))

    def __enter__(self) -> EpisodeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the write lock; the handle stays usable read-only. Idempotent; readers: no-op."""
        if self._release is not None:
            self._release()
        if self.mode != "r":
            self.mode = "r"

    def __repr__(self) -> str:
        return f"EpisodeStore({self.location.url!r}, mode={self.mode!r}, episodes={self.num_episodes})"

    # ------------------------------------------------------------------ reading
    @property
    def url(self) -> str:
        return self.location.url

    @property
    def attrs(self) -> dict[str, Any]:
        """Store-level attributes (format, schema, created_by, split, cached stats) as JSON."""
        return dict(self._attrs)

    @property
    def episodes(self) -> list[EpisodeMeta]:
        return list(self._episodes)

    @property
    def num_episodes(self) -> int:
        return len(self._episodes)

    @property
    def num_steps(self) -> int:
        return self._num_steps

    @property
    def generation(self) -> int:
        """Bumped whenever episodes are added or removed; cached statistics carry it."""
        return self._generation

    def episode(self, index: int) -> EpisodeMeta:
        return self._episodes[self._check_index(index)]

    def _check_index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise EpisodeIndexError(f"episode index {index!r} is not an integer")
        if not 0 <= index < len(self._episodes):
            raise EpisodeIndexError(
                f"{self.location}: episode {index} does not exist (the store has {len(self._episodes)} "
                f"episodes, 0..{len(self._episodes) - 1})"
            )
        return int(index)

    def obs_array(self, key: str) -> Any:
        """The zarr array of one observation key; committed steps are ``[:store.num_steps]``."""
        if key not in self.schema.obs_keys:
            raise StoreError(f"{self.location}: observation key '{key}' is not in the store ({self.schema.obs_keys})")
        return self._arrays[key]

    def action_array(self) -> Any:
        return self._arrays[ACTIONS_KEY]

    def read_steps(self, key: str, start: int, stop: int) -> np.ndarray:
        """Committed steps [start, stop) of an observation key or "actions": the sampler's hot path.

        Local stores decode chunk files directly (see fastread.py, ~30x faster than a zarr slice);
        other backends slice through zarr. Both return identical arrays.
        """
        if not 0 <= start <= stop <= self._num_steps:
            raise StoreError(
                f"{self.location}: steps [{start}, {stop}) of '{key}' are outside the committed range "
                f"[0, {self._num_steps})"
            )
        reader = self._reader(key)
        try:
            return reader.read(start, stop)
        except ChunkCorruptError as err:
            raise self._chunk_error(key, err) from err

    def read_at(self, key: str, steps: Any) -> np.ndarray:
        """Committed steps at sorted, unique global indices ``steps`` (the sampler's image reads).

        Each chunk is decoded once however many of its steps are asked for; missing or garbage chunks
        are refused like in ``read_steps``.
        """
        steps = np.asarray(steps, dtype=np.int64).reshape(-1)
        if len(steps) and (steps[0] < 0 or steps[-1] >= self._num_steps or np.any(np.diff(steps) <= 0)):
            raise StoreError(
                f"{self.location}: steps of '{key}' must be sorted, unique and inside the committed range "
                f"[0, {self._num_steps})"
            )
        try:
            return self._reader(key).take(steps)
        except ChunkCorruptError as err:
            raise self._chunk_error(key, err) from err

    def _reader(self, key: str) -> ChunkReader:
        reader = self._readers.get(key)
        if reader is None:
            if key not in self._arrays:
                raise StoreError(f"{self.location}: '{key}' is not an observation key or 'actions'")
            root = self.location.local_path
            folder = None if root is None else root / _array_path(key)
            # A store without dense chunks may lack all-zero chunks legitimately: read them as zarr's
            # fill value, once said aloud (``_sparse_chunk``); a dense store refuses any missing chunk.
            # Through a weak reference: a handle must not keep itself alive (a writable one holds the lock).
            reader = self._readers[key] = ChunkReader(
                self._arrays[key], folder, strict=self.dense_chunks,
                on_missing=functools.partial(_sparse_chunk_of, weakref.ref(self)),
            )
        return reader

    @property
    def dense_chunks(self) -> bool:
        """True when every committed chunk has a file, so a missing one is lost data (see DENSE_CHUNKS_ATTR)."""
        return bool(self._attrs.get(DENSE_CHUNKS_ATTR))

    def _sparse_chunk(self, index: int) -> None:
        """A read of a pre-dense store met a missing chunk: warn once per handle, naming every such chunk."""
        if self._warned_sparse:
            return
        self._warned_sparse = True
        warnings.warn(sparse_chunks_message(self), SparseChunksWarning, stacklevel=4)

    def episodes_in_steps(self, start: int, stop: int) -> list[int]:
        """Indices of the committed episodes overlapping steps [start, stop)."""
        first = bisect.bisect_right([m.start for m in self._episodes], start) - 1
        out = []
        for m in self._episodes[max(first, 0) :]:
            if m.start >= stop:
                break
            if m.end > start:
                out.append(m.index)
        return out

    def _chunk_error(self, key: str, err: ChunkCorruptError) -> StoreCorruptError:
        """Name the episode(s) and key a lost or garbage chunk belongs to, and what can be done."""
        episodes = self.episodes_in_steps(err.steps[0], min(err.steps[1], self._num_steps))
        which = ", ".join(map(str, episodes)) or "none (past the committed steps)"
        label = "episode" if len(episodes) == 1 else "episodes"
        hint = "restore the store from a backup"
        if episodes:
            hint += f", or drop the affected episodes (`robot-offrl data delete STORE --episodes {','.join(map(str, episodes))}`)"
        return StoreCorruptError(f"{self.location}: {label} {which}, key '{key}': chunk {err.path}: {err.detail}; {hint}")

    def _missing_chunk_indices(self) -> list[tuple[str, int]]:
        out = []
        for key in self._arrays:
            reader = self._reader(key)
            out += [(key, i) for i in range(-(-self._num_steps // reader.steps_per_chunk)) if not reader.exists(i)]
        return out

    def missing_chunks(self) -> list[tuple[str, str, list[int]]]:
        """Every committed chunk without a file: (key, chunk key, episodes it holds). ``validate`` lists them."""
        out = []
        for key, index in self._missing_chunk_indices():
            reader = self._reader(key)
            lo, hi = index * reader.steps_per_chunk, min((index + 1) * reader.steps_per_chunk, self._num_steps)
            out.append((key, reader.chunk_name(index), self.episodes_in_steps(lo, hi)))
        return out

    def densify(self) -> list[str]:
        """Write every missing committed chunk as explicit fill values (zeros) and mark the store dense.

        For stores written before dense chunks whose missing chunks were all-zero ones zarr skipped:
        afterwards a missing chunk is lost data and an error, as in new stores. Returns the chunk keys
        written. The caller has checked they were all-zero, not lost (``data validate`` lists them).
        """
        self._require_writable()
        if self.uncommitted_steps:
            self.truncate_uncommitted()
        written: list[str] = []
        with self._writing():
            for key, index in self._missing_chunk_indices():
                array, reader = self._arrays[key], self._reader(key)
                lo = index * reader.steps_per_chunk
                hi = min(lo + reader.steps_per_chunk, int(array.shape[0]))
                array[lo:hi] = np.full((hi - lo, *array.shape[1:]), array.metadata.fill_value, dtype=array.dtype)
                written.append(reader.chunk_name(index))
            self._sync(written)
        if not self.dense_chunks:
            self._write_attrs({**self._attrs, DENSE_CHUNKS_ATTR: True})
        self._readers = {}  # strict from now on
        return written

    def read_episode(self, index: int) -> Episode:
        meta = self.episode(index)
        obs = {k: self.read_steps(k, meta.start, meta.end) for k in self.schema.obs_keys}
        return Episode(meta=meta, obs=obs, actions=self.read_steps(ACTIONS_KEY, meta.start, meta.end))

    def select_episodes(
        self,
        *,
        expert: bool | None = None,
        sources: Iterable[str] | None = None,
        success: bool | None | _Unset = UNSET,
        split: SplitName | None = None,
    ) -> list[int]:
        """Indices of episodes matching every given filter (None / UNSET: no filter on that field)."""
        allowed = None if sources is None else {check_source(s) for s in sources}
        in_split = None if split is None else set(self.split_indices(split))
        out = []
        for m in self._episodes:
            if expert is not None and m.expert != expert:
                continue
            if allowed is not None and m.source not in allowed:
                continue
            if not isinstance(success, _Unset) and m.success != success:
                continue
            if in_split is not None and m.index not in in_split:
                continue
            out.append(m.index)
        return out

    # ------------------------------------------------------------------ writing
    def _require_writable(self) -> None:
        if self.mode == "r":
            raise StoreReadOnlyError(
                f"{self.location}: opened read-only (or closed); open with mode='r+' to modify it"
            )

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Every write runs inside this: writable, still the lock holder, filesystem errors as one line.

        After a failed write the arrays may have grown on disk (or in zarr's memory) past the committed
        steps; they are re-read so the next append starts by cutting exactly that tail.
        """
        self._require_writable()
        assert self._lock is not None
        self._lock.check()
        try:
            with translate_write_errors(str(self.location)):
                yield
        except BaseException:
            with contextlib.suppress(Exception):
                self._reload_arrays()
            raise

    def _reload_arrays(self) -> None:
        for key in list(self._arrays):
            self._arrays[key] = self._open_array(_array_path(key))
        self._readers = {}
        self.uncommitted_steps = max(0, *(int(a.shape[0]) - self._num_steps for a in self._arrays.values()))

    def _sync(self, keys: list[str]) -> None:
        if self.durable:
            self.location.fsync_keys(keys)

    def _commit_index(self, episodes: list[EpisodeMeta], num_steps: int, generation: int) -> None:
        """The commit point: one whole-key write of index/zarr.json."""
        attrs = _index_attrs([m.to_record() for m in episodes], num_steps, self._next_uid, generation)
        with self._writing():
            self._root[INDEX_GROUP].attrs.put(attrs)
            self._sync([f"{INDEX_GROUP}/zarr.json"])
        self._episodes = [
            EpisodeMeta(i, m.start, m.length, m.expert, m.source, m.success, m.uid, m.attrs)
            for i, m in enumerate(episodes)
        ]
        self._num_steps = num_steps
        self._generation = generation

    def _write_attrs(self, attrs: dict[str, Any]) -> None:
        with self._writing():
            self._root.attrs.put(attrs)
            self._sync(["zarr.json"])
        self._attrs = dict(attrs)

    def truncate_uncommitted(self) -> int:
        """Cut every array back to the committed steps; returns how many steps were dropped.

        Only the lock holder gets here, so the steps cut are an interrupted append's, never a live one's.
        """
        with self._writing():
            dropped = self.uncommitted_steps
            for array in self._arrays.values():
                if array.shape[0] > self._num_steps:
                    array.resize((self._num_steps, *array.shape[1:]))
            self._sync([f"{_array_path(k)}/zarr.json" for k in self._arrays])
            self.uncommitted_steps = 0
        return dropped

    def append_episode(
        self,
        obs: Mapping[str, Any],
        actions: Any,
        *,
        expert: bool,
        source: str,
        success: bool | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> int:
        """Append one whole episode atomically; returns its index.

        Everything is validated before the first byte is written. Arrays are written (and fsync'ed),
        then the index is committed; a crash before the commit leaves only ignorable uncommitted steps.
        """
        return self._append(obs, actions, expert=expert, source=source, success=success, attrs=attrs, uid=None)

    def _append(
        self,
        obs: Mapping[str, Any],
        actions: Any,
        *,
        expert: bool,
        source: str,
        success: bool | None,
        attrs: Mapping[str, Any] | None,
        uid: int | None,
    ) -> int:
        self._require_writable()
        index = len(self._episodes)
        if not isinstance(expert, bool | np.bool_):
            raise SchemaError(f"episode {index}: expert must be True or False, got {expert!r}")
        check_source(source, episode=index)
        success = check_success(success, episode=index)
        attrs_json = check_attrs_json(attrs, episode=index)
        obs_ok, act_ok = check_episode(self.schema, obs, actions, episode=index)
        if self.uncommitted_steps:
            self.truncate_uncommitted()
        start, length = self._num_steps, len(act_ok)
        written: list[str] = []
        with self._writing():
            for key, data in [*obs_ok.items(), (ACTIONS_KEY, act_ok)]:
                array = self._arrays[key]
                array.append(data, axis=0)
                written += chunk_keys(array, _array_path(key), start, start + length)
            self._sync(written)
        if uid is None:
            uid = self._next_uid
        self._next_uid = max(self._next_uid, uid + 1)
        meta = EpisodeMeta(index, start, length, bool(expert), source, success, uid, attrs_json)
        self._commit_index([*self._episodes, meta], start + length, self._generation + 1)
        return index

    def set_flags(
        self,
        indices: Sequence[int],
        *,
        expert: bool | _Unset = UNSET,
        source: str | _Unset = UNSET,
        success: bool | None | _Unset = UNSET,
    ) -> None:
        """Relabel episodes without touching their data (one index commit for all of them)."""
        self._require_writable()
        checked = [self._check_index(i) for i in indices]
        if not isinstance(expert, _Unset) and not isinstance(expert, bool | np.bool_):
            raise SchemaError(f"expert must be True or False, got {expert!r}")
        if not isinstance(source, _Unset):
            check_source(source)
        if not isinstance(success, _Unset):
            success = check_success(success)
        episodes = list(self._episodes)
        for i in checked:
            m = episodes[i]
            episodes[i] = EpisodeMeta(
                i,
                m.start,
                m.length,
                m.expert if isinstance(expert, _Unset) else bool(expert),
                m.source if isinstance(source, _Unset) else source,
                m.success if isinstance(success, _Unset) else success,
                m.uid,
                m.attrs,
            )
        self._commit_index(episodes, self._num_steps, self._generation)

    def update_attrs(self, index: int, attrs: Mapping[str, Any], *, replace: bool = False) -> None:
        """Merge (or replace) an episode's free-form attributes."""
        self._require_writable()
        i = self._check_index(index)
        new = check_attrs_json(attrs, episode=i)
        episodes = list(self._episodes)
        m = episodes[i]
        merged = new if replace else {**m.attrs, **new}
        episodes[i] = EpisodeMeta(i, m.start, m.length, m.expert, m.source, m.success, m.uid, merged)
        self._commit_index(episodes, self._num_steps, self._generation)

    # ------------------------------------------------------------------ derived data
    def norm_stats(self, recompute: bool = False) -> NormStats:
        """Statistics of low-dim keys and actions; cached in the store while the episodes stay the same."""
        cached = self._attrs.get("norm_stats")
        if not recompute and isinstance(cached, dict) and cached.get("generation") == self._generation:
            stats = NormStats.from_dict(cached["stats"])
            if stats.is_finite():  # a non-finite cache (older versions wrote them) is recomputed, i.e. refused
                return stats
        keys = [*self.schema.lowdim_keys(), ACTIONS_KEY]
        stats = compute_stats(
            self.read_steps, keys, [(m.index, m.start, m.end) for m in self._episodes], where=str(self.location)
        )
        if self.mode != "r":
            entry = {"generation": self._generation, "computed_at": _now(), "stats": stats.to_dict()}
            self._write_attrs({**self._attrs, "norm_stats": entry})
        return stats

    def set_split(self, val_fraction: float, seed: int = 0) -> dict[str, Any]:
        """Choose validation episodes (stratified by expert flag, deterministic in ``seed``) and store them.

        The split names episodes by uid, so it survives deleting other episodes; episodes appended
        later belong to "train" until the split is recomputed.
        """
        self._require_writable()
        if not 0.0 <= float(val_fraction) < 1.0:
            raise StoreError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise StoreError(f"seed must be a non-negative integer, got {seed!r}")
        rng = np.random.default_rng(int(seed))
        val: list[int] = []
        counts = []
        for flag in (True, False):
            uids = [m.uid for m in self._episodes if m.expert == flag]
            count = int(round(float(val_fraction) * len(uids)))
            counts.append(f"{count} of {len(uids)} {'expert' if flag else 'non-expert'}")
            if count:
                val += [int(u) for u in rng.permutation(uids)[:count]]
        if self._episodes and len(val) == len(self._episodes):
            raise StoreError(
                f"{self.location}: val_fraction {val_fraction} would put every episode in validation "
                f"({' and '.join(counts)} episodes) and leave none to train on; use a smaller fraction"
            )
        entry = {
            "val_fraction": float(val_fraction),
            "seed": int(seed),
            "val_uids": sorted(val),
            "num_episodes_at_split": self.num_episodes,
            "created_at": _now(),
        }
        self._write_attrs({**self._attrs, "split": entry})
        return entry

    @property
    def split(self) -> dict[str, Any] | None:
        entry = self._attrs.get("split")
        return dict(entry) if isinstance(entry, dict) else None

    def split_indices(self, name: SplitName) -> list[int]:
        """Episode indices of the stored split; without a split everything is "train" and "val" is empty."""
        if name not in ("train", "val"):
            raise StoreError(f"split name {name!r} is not 'train' or 'val'")
        entry = self.split
        val_uids = set(entry.get("val_uids", [])) if entry else set()
        want_val = name == "val"
        return [m.index for m in self._episodes if (m.uid in val_uids) == want_val]


def _sparse_chunk_of(ref: weakref.ref[EpisodeStore], index: int) -> None:
    store = ref()
    if store is not None:
        store._sparse_chunk(index)


def sparse_chunks_message(store: EpisodeStore) -> str:
    """What reads and ``validate`` say about the missing chunks of a store written before dense chunks."""
    missing = store.missing_chunks()
    names = ", ".join(chunk for _, chunk, _ in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
    return (
        f"{store.location}: written before dense chunks, {len(missing)} committed chunk(s) have no file ({names}): "
        "either all-zero (older versions let zarr skip those) or lost; they read as zeros. If they were "
        f"all-zero, run `robot-offrl data repair --densify {store.location}` to record them; if lost, restore "
        "the store from a backup"
    )


def _array_path(key: str) -> str:
    return ACTIONS_ARRAY if key == ACTIONS_KEY else obs_path(key)


def _index_attrs(records: list[dict[str, Any]], num_steps: int, next_uid: int, generation: int) -> dict[str, Any]:
    return {"episodes": records, "num_steps": num_steps, "next_uid": next_uid, "generation": generation}


def _finish_swap_for_reader(location: Location) -> None:
    """A reader finding the store missing mid-swap finishes the swap only if it can take the lock.

    While a writer holds the lock the swap is that writer's own, in progress: say so instead of
    touching it. Stores elsewhere never swap.
    """
    if location.local_path is None or location.exists():
        return
    if not any(location.sibling(s).is_dir() for s in (REBUILD_SUFFIX, OLD_SUFFIX)):
        return
    try:
        lock, holder = try_write_lock(location)
    except StoreError:
        return  # read-only filesystem: nothing can be finished; "not found" follows
    if lock is None:
        who = holder.describe() if holder is not None else "another process"
        raise StoreLockedError(f"{location}: being rebuilt by {who}; open it again when that finishes")
    try:
        with translate_write_errors(str(location)):
            recover_interrupted_swap(location)
    finally:
        lock.release()


def _reopen_readonly(url: str) -> EpisodeStore:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UncommittedDataWarning)
        return EpisodeStore.open(url, mode="r")
