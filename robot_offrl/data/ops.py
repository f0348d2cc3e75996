"""Whole-store operations behind ``robot-offrl data``: info, list, show, repair, delete, merge.

Operations that remove data never edit the store in place: they build the new layout next to the old
one and swap directories, so a crash leaves either the old store or the new one, never a mix. Every
operation that writes holds the store's write lock (lock.py) from before it reads the index until it
is done, so no other writer's work is cut, resurrected or reverted.
"""

from __future__ import annotations

import contextlib
import shutil
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from robot_offrl.data.backend import (
    REBUILD_SUFFIX,
    Location,
    fsync_tree,
    recover_interrupted_swap,
    remove_partial_store,
    stale_siblings,
    swap_into_place,
)
from robot_offrl.data.errors import SchemaError, StoreError, StoreExistsError, translate_write_errors
from robot_offrl.data.layout import ACTIONS_ARRAY, chunk_steps, obs_path
from robot_offrl.data.lock import BorrowedLock, acquire_write_lock
from robot_offrl.data.schema import StoreSchema
from robot_offrl.data.staging import build_beside, remove_stale_build
from robot_offrl.data.store import EpisodeStore, UncommittedDataWarning


def _success_label(value: bool | None) -> str:
    return "unknown" if value is None else str(value).lower()


def summarize(store: EpisodeStore) -> dict[str, Any]:
    """Everything ``data info`` prints, as JSON-serialisable data."""
    eps = store.episodes
    keys = [
        {
            "name": spec.name,
            "kind": spec.kind,
            "dtype": spec.dtype,
            "shape": list(spec.shape),
            "chunk_steps": chunk_steps(spec),
        }
        for spec in store.schema.obs
    ]
    stats = store.attrs.get("norm_stats")
    split = store.split
    return {
        "url": store.url,
        "format": store.attrs.get("format"),
        "format_version": store.attrs.get("format_version"),
        "written_format_version": store.written_format_version,
        "created_by": store.attrs.get("created_by"),
        "created_at": store.attrs.get("created_at"),
        "robot": store.schema.robot,
        "task": store.schema.task,
        "control_rate_hz": store.schema.control_rate_hz,
        "action": store.schema.action.to_dict(),
        "keys": keys,
        "episodes": len(eps),
        "steps": store.num_steps,
        "expert_episodes": sum(m.expert for m in eps),
        "non_expert_episodes": sum(not m.expert for m in eps),
        "expert_steps": sum(m.length for m in eps if m.expert),
        "by_source": dict(sorted(Counter(m.source for m in eps).items())),
        "by_success": dict(sorted(Counter(_success_label(m.success) for m in eps).items())),
        "episode_length": {
            "min": min((m.length for m in eps), default=0),
            "mean": float(np.mean([m.length for m in eps])) if eps else 0.0,
            "max": max((m.length for m in eps), default=0),
        },
        "uncommitted_steps": store.uncommitted_steps,
        "size_bytes": store.location.size_bytes(),
        "size_bytes_by_key": size_of_keys(store),
        "norm_stats_cached": bool(isinstance(stats, dict) and stats.get("generation") == store.generation),
        "split": None
        if split is None
        else {
            "val_fraction": split["val_fraction"],
            "seed": split["seed"],
            "train": len(store.split_indices("train")),
            "val": len(store.split_indices("val")),
        },
    }


def _human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"


def format_summary(s: dict[str, Any]) -> str:
    lines = [
        f"store:        {s['url']}",
        f"format:       {s['format']} v{s['format_version']}  (created by {s['created_by']}, {s['created_at']})",
        f"robot/task:   {s['robot']} / {s['task']} at {s['control_rate_hz']:g} Hz",
        f"actions:      {s['action']['mode']} {', '.join(s['action']['names'])}",
        f"episodes:     {s['episodes']} ({s['expert_episodes']} expert, {s['non_expert_episodes']} non-expert)",
        f"steps:        {s['steps']} ({s['expert_steps']} expert); length min/mean/max "
        f"{s['episode_length']['min']}/{s['episode_length']['mean']:.1f}/{s['episode_length']['max']}",
        f"by source:    {', '.join(f'{k}={v}' for k, v in s['by_source'].items()) or '-'}",
        f"by success:   {', '.join(f'{k}={v}' for k, v in s['by_success'].items()) or '-'}",
        f"size on disk: {_human_bytes(s['size_bytes'])}",
        "keys:",
    ]
    for k in s["keys"]:
        lines.append(f"  {k['name']:<28} {k['kind']:<7} {k['dtype']:<8} {tuple(k['shape'])}")
    split = s["split"]
    lines.append(
        "split:        none (run `robot-offrl data split`)"
        if split is None
        else f"split:        train={split['train']} val={split['val']} (fraction {split['val_fraction']}, seed {split['seed']})"
    )
    lines.append(f"norm stats:   {'cached' if s['norm_stats_cached'] else 'not cached (run `robot-offrl data stats`)'}")
    if s["uncommitted_steps"]:
        lines.append(f"WARNING:      {s['uncommitted_steps']} uncommitted steps; run `robot-offrl data repair`")
    return "\n".join(lines)


def format_episode_table(store: EpisodeStore) -> str:
    val = set(store.split_indices("val")) if store.split else set()
    header = f"{'idx':>5} {'start':>8} {'length':>7} {'expert':>6} {'source':<15} {'success':<8} {'split':<5} attrs"
    rows = [header]
    for m in store.episodes:
        split = ("val" if m.index in val else "train") if store.split else "-"
        attrs = ", ".join(f"{k}={v}" for k, v in m.attrs.items())
        if len(attrs) > 60:
            attrs = attrs[:57] + "..."
        rows.append(
            f"{m.index:>5} {m.start:>8} {m.length:>7} {('yes' if m.expert else 'no'):>6} {m.source:<15} "
            f"{_success_label(m.success):<8} {split:<5} {attrs}"
        )
    return "\n".join(rows)


def describe_episode(store: EpisodeStore, index: int) -> dict[str, Any]:
    """One episode's labels, attributes and a per-key summary of its data."""
    episode = store.read_episode(index)
    m = episode.meta
    keys: dict[str, Any] = {}
    for name, values in {**episode.obs, "actions": episode.actions}.items():
        entry: dict[str, Any] = {"dtype": str(values.dtype), "shape": list(values.shape)}
        if values.dtype != np.uint8:
            flat = values.reshape(len(values), -1).astype(np.float64)
            entry["min"] = flat.min(axis=0).round(4).tolist()
            entry["max"] = flat.max(axis=0).round(4).tolist()
        keys[name] = entry
    return {
        "index": m.index,
        "uid": m.uid,
        "start": m.start,
        "length": m.length,
        "duration_s": round(m.length / store.schema.control_rate_hz, 3),
        "expert": m.expert,
        "source": m.source,
        "success": m.success,
        "attrs": m.attrs,
        "keys": keys,
    }


def repair(path_or_url: str, *, wait_s: float | None = None, densify: bool = False) -> dict[str, Any]:
    """Bring a store back to exactly its committed state; returns what was done.

    Runs only as the lock holder: uncommitted steps, temp files and rebuild folders are then provably
    leftovers of a dead writer, not the work of a live one. ``densify``: also write the missing chunks
    of a store written before dense chunks as explicit zeros and mark it dense (``EpisodeStore.densify``).
    """
    location = Location.parse(path_or_url)
    lock = acquire_write_lock(location, wait_s=wait_s)
    try:
        with translate_write_errors(str(location)):
            report: dict[str, Any] = {"recovered_swap": recover_interrupted_swap(location)}
            staged = remove_stale_build(location)  # an interrupted merge/import/build-dataset of this path
        if staged is not None and not location.exists():
            return {**report, "truncated_steps": 0, "removed_temp_files": [], "removed_stale_dirs": [staged],
                    "densified_chunks": []}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UncommittedDataWarning)
            store = EpisodeStore._open_locked(location, "r+", lock)
        report["truncated_steps"] = store.truncate_uncommitted() if store.uncommitted_steps else 0
        with translate_write_errors(str(location)):
            temps = location.leftover_temp_files()
            for path in temps:
                path.unlink(missing_ok=True)
            stale = stale_siblings(location)
            for path in stale:
                shutil.rmtree(path)
        report["removed_temp_files"] = [str(p) for p in temps]
        report["removed_stale_dirs"] = [str(p) for p in stale] + ([staged] if staged else [])
        report["densified_chunks"] = store.densify() if densify else []
        return report
    finally:
        lock.release()


def _copy_episodes(
    src: EpisodeStore, dst: EpisodeStore, indices: Iterable[int], *, keep_uid: bool, extra_attrs: bool
) -> int:
    copied = 0
    for i in indices:
        ep = src.read_episode(i)
        m = ep.meta
        attrs = {**m.attrs, "merged_from": {"store": src.url, "episode": m.index}} if extra_attrs else m.attrs
        dst._append(
            ep.obs,
            ep.actions,
            expert=m.expert,
            source=m.source,
            success=m.success,
            attrs=attrs,
            uid=m.uid if keep_uid else None,
        )
        copied += 1
    return copied


def _finish_bulk_write(store: EpisodeStore) -> None:
    if store.location.local_path is not None:
        with translate_write_errors(str(store.location)):
            fsync_tree(store.location.local_path)


def delete_episodes(path: str, indices: Sequence[int], *, wait_s: float | None = None) -> EpisodeStore:
    """Remove episodes by rebuilding the store beside itself and swapping it into place.

    The write lock is held from before the index is read until the swap is done, so no append can
    land in the old copy and vanish (or resurrect deleted episodes). A symlinked path acts on the real
    store and keeps the link. Returns the store opened for writing; close it to release the lock.
    """
    location = Location.parse(path)
    if location.local_path is None:
        raise StoreError(
            f"{location}: deleting episodes needs a local store (it rebuilds and swaps directories); copy the "
            "store locally, or merge the episodes you keep into a new store"
        )
    lock = acquire_write_lock(location, wait_s=wait_s)
    rebuilt = location.sibling(REBUILD_SUFFIX)
    try:
        with translate_write_errors(str(location)):
            recover_interrupted_swap(location)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UncommittedDataWarning)
            src = EpisodeStore.open(location.local_path, mode="r")
        drop = {src.episode(i).index for i in indices}
        if not drop:
            raise StoreError("no episodes selected for deletion")
        try:
            with translate_write_errors(str(location)):
                shutil.rmtree(rebuilt, ignore_errors=True)
            dst = EpisodeStore.create(str(rebuilt), src.schema, durable=False, lock=BorrowedLock(lock))
            keep = [m.index for m in src.episodes if m.index not in drop]
            _copy_episodes(src, dst, keep, keep_uid=True, extra_attrs=False)
            carried = {k: v for k, v in src.attrs.items() if k not in ("norm_stats", "format_version", "format")}
            dst._write_attrs({**dst.attrs, **carried, "schema": dst.attrs["schema"]})
            dst._next_uid = max(dst._next_uid, src._next_uid)
            dst._commit_index(dst.episodes, dst.num_steps, max(dst.generation, src.generation + 1))
            _finish_bulk_write(dst)
            with translate_write_errors(str(location)):
                swap_into_place(location, rebuilt)
        except BaseException:
            # The old store was never touched before the swap; a half-built copy is only clutter.
            with contextlib.suppress(OSError):
                if location.local_path.exists():
                    shutil.rmtree(rebuilt, ignore_errors=True)
            raise
        return EpisodeStore(location, "r+", lock=lock)
    except BaseException:
        lock.release()
        raise


def merge_stores(out: str, inputs: Sequence[str]) -> EpisodeStore:
    """A new store at ``out`` holding every episode of ``inputs`` in order; schemas must be identical."""
    if not inputs:
        raise StoreError("merge needs at least one input store")
    if Location.parse(out).exists():
        raise StoreExistsError(f"{out}: already exists; merge writes a new store, pick a new output path")
    # Inputs are only read; the destination is locked by create() until the caller closes it.
    sources = [EpisodeStore.open(p, mode="r") for p in inputs]
    first = sources[0]
    for other in sources[1:]:
        diffs = first.schema.differences(other.schema)
        if diffs:
            raise SchemaError(
                f"cannot merge {other.url} into {first.url}: schemas differ: {'; '.join(diffs)}"
            )

    def fill(dst: EpisodeStore) -> None:
        for src in sources:
            _copy_episodes(src, dst, range(src.num_episodes), keep_uid=False, extra_attrs=True)

    # Built beside `out` and renamed into place when complete (staging.py): a killed merge leaves no
    # partial store at `out` for later tools to mistake for the whole one.
    with build_beside(out, "data merge") as path:
        _write_new_store(path, first.schema, fill).close()
    return EpisodeStore.open(out, mode="r+")


def copy_store(src_path: str, out: str) -> EpisodeStore:
    """Copy a store (e.g. a local one to an fsspec URL); uids, labels and the split are kept."""
    src = EpisodeStore.open(src_path, mode="r")
    if Location.parse(out).exists():
        raise StoreExistsError(f"{out}: already exists; pick a new output path")

    def fill(dst: EpisodeStore) -> None:
        _copy_episodes(src, dst, range(src.num_episodes), keep_uid=True, extra_attrs=False)
        if src.split is not None:
            dst._write_attrs({**dst.attrs, "split": src.split})

    return _write_new_store(out, src.schema, fill)


def _write_new_store(out: str, schema: StoreSchema, fill: Callable[[EpisodeStore], None]) -> EpisodeStore:
    """Create ``out``, let ``fill`` write it, fsync once; returned open for writing (close it to unlock).

    Any failure (a full disk, a bad input) removes the partial store while its lock is still held, so
    a merge or copy leaves either a complete new store or nothing.
    """
    dst = EpisodeStore.create(out, schema, durable=False)
    try:
        fill(dst)
        _finish_bulk_write(dst)
    except BaseException:
        remove_partial_store(dst.location)
        dst.close()
        raise
    dst.durable = True
    return dst


def size_of_keys(store: EpisodeStore) -> dict[str, int]:
    """Bytes on disk per array (local stores), for ``info --json`` users tuning chunking."""
    root = store.location.local_path
    if root is None:
        return {}
    out = {}
    for key in [*store.schema.obs_keys, "actions"]:
        folder = root / (ACTIONS_ARRAY if key == "actions" else obs_path(key))
        out[key] = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    return out
