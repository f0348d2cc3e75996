"""Log one episode to Rerun (camera frames, actions, low-dim observations, labels) to look at it.

Reading a demonstration as numbers hides what a viewer shows at once: a camera that froze, a gripper
command that never fires, actions that lag the state. ``rerun-sdk`` is the optional ``viewer`` extra,
imported only here. Without a viewer to stream to, the recording is saved as an ``.rrd`` file that
``rerun FILE.rrd`` opens later (on any machine); tests only ever save.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from robot_offrl.data.errors import StoreError
from robot_offrl.data.store import EpisodeStore
from robot_offrl.extras import require

APP_ID = "robot_offrl"


def default_rrd_path(episode: int) -> Path:
    """``./episode_N.rrd``: never inside the store, whose folder holds only the store's own files."""
    return Path(f"episode_{episode}.rrd")


def _check_save_path(path: Path, overwrite: bool) -> None:
    if path.suffix != ".rrd":
        raise StoreError(f"{path}: a Rerun recording file must end in .rrd")
    if not path.parent.resolve().is_dir():
        raise StoreError(f"{path}: the folder {path.parent} does not exist; create it first")
    if path.exists() and not overwrite:
        raise StoreError(f"{path}: already exists; pass --overwrite to replace it, or --save another path")


def _labels(store: EpisodeStore, episode: int) -> str:
    meta = store.episode(episode)
    schema = store.schema
    lines = [
        f"# {store.url} episode {episode} (uid {meta.uid})",
        f"- expert: {meta.expert}",
        f"- source: {meta.source}",
        f"- success: {'unknown' if meta.success is None else meta.success}",
        f"- steps: {meta.length} at {schema.control_rate_hz:g} Hz",
        f"- robot / task: {schema.robot} / {schema.task}",
        f"- action mode: {schema.action.mode}",
        "",
        "```json",
        json.dumps(meta.attrs, indent=1, sort_keys=True),
        "```",
    ]
    return "\n".join(lines)


def _send_series(rr: Any, rec: Any, entity: str, values: np.ndarray, steps: np.ndarray, times: np.ndarray) -> None:
    """One scalar time series per column, sent as whole columns (one call, not one per step)."""
    indexes = [rr.TimeSequenceColumn("step", steps), rr.TimeSecondsColumn("time", times)]
    rr.send_columns(entity, indexes=indexes, columns=[rr.components.ScalarBatch(values.astype(np.float64))],
                    recording=rec)


def log_episode(
    store: EpisodeStore,
    episode: int,
    *,
    save: str | os.PathLike[str] | None = None,
    connect: str | None = None,
    spawn: bool = False,
    overwrite: bool = False,
) -> Path | None:
    """Log ``episode`` to Rerun: to a viewer at ``connect``, a spawned viewer, or else an ``.rrd`` file.

    Returns the ``.rrd`` path when saved. Entities: ``cameras/<key>`` (rgb/depth), ``obs/<key>/<i>``,
    ``action/<name>`` (timelines ``step`` and ``time``), and ``episode`` (labels as markdown).
    """
    rr = require("rerun", "viewer", "data view")
    meta = store.episode(episode)
    out: Path | None = None
    if connect is None and not spawn:
        out = Path(save) if save is not None else default_rrd_path(episode)
        _check_save_path(out, overwrite)
    ep = store.read_episode(episode)
    rec = rr.new_recording(APP_ID, recording_id=f"{store.url}#uid{meta.uid}", spawn=spawn)
    if out is not None:
        rec.save(str(out))
    elif connect is not None:
        rr.connect_grpc(connect, recording=rec)
    rr.log("episode", rr.TextDocument(_labels(store, episode), media_type=rr.MediaType.MARKDOWN),
           static=True, recording=rec)
    steps = np.arange(len(ep), dtype=np.int64)
    times = steps / store.schema.control_rate_hz
    schema = store.schema
    for name, column in zip(schema.action.names, ep.actions.T, strict=True):
        rr.log(f"action/{name}", rr.SeriesLine(name=f"action {name}"), static=True, recording=rec)
        _send_series(rr, rec, f"action/{name}", column, steps, times)
    for key in schema.lowdim_keys():
        for i, column in enumerate(ep.obs[key].T):
            _send_series(rr, rec, f"obs/{key}/{i}", column, steps, times)
    image_keys = schema.image_keys()
    for t in range(len(ep)) if image_keys else ():
        rr.set_time_sequence("step", t, recording=rec)
        rr.set_time_seconds("time", float(times[t]), recording=rec)
        for key in image_keys:
            frame = ep.obs[key][t]
            image = rr.Image(frame) if schema.key(key).kind == "rgb" else rr.DepthImage(np.squeeze(frame))
            rr.log(f"cameras/{key}", image, recording=rec)
    if out is not None:
        rec.flush(blocking=True)  # the file is complete when this returns
        rec.disconnect()
    return out


def read_rrd(path: str | os.PathLike[str]) -> Any:
    """Load an ``.rrd`` back with rerun's own reader (used to check what was written)."""
    rr = require("rerun", "viewer", "reading a Rerun recording")
    return rr.dataframe.load_recording(str(path))
