"""Convert between episode stores and LeRobot datasets (format v2.1) with the ``lerobot`` package itself.

Most open robot data is published as LeRobot datasets; writing and reading them through lerobot's own
``LeRobotDataset`` (``create`` / ``add_frame`` / ``save_episode`` and its loader) keeps us on its file
layout instead of a copy of it that drifts. Only local folders are read: lerobot would download a
dataset whose files are missing, so every file it needs is checked for first and a missing one is
an error. lerobot is an optional extra, imported when a command runs (``robot_offrl.extras``).

Feature mapping (``docs/dataset.md``): ``action`` -> actions; ``observation.images.<k>`` (image or
video) -> rgb key ``<k>``; ``observation.depth.<k>`` -> depth key ``<k>``; any other 1-D numeric
``observation.<k>`` -> low-dim key ``<k>``; ``fps`` -> control rate; task strings -> each episode's
``attrs["task"]``. What LeRobot has no place for (expert flag, source, success, attrs, units, bounds,
action mode) travels in ``meta/robot_offrl.json`` beside lerobot's own metadata, so a round trip
STORE -> LeRobot -> STORE keeps every value. Images are written as PNG frames by default (lossless);
``video=True`` uses lerobot's AV1 video encoding, which is lossy.

Video frames are decoded with PyAV, the library lerobot encodes them with: lerobot 0.3.2's own
decoders need ``torchvision.io.VideoReader`` (gone from torchvision 0.29) or torchcodec (needs system
FFmpeg libraries), neither of which this project can count on.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robot_offrl.data.backend import Location
from robot_offrl.data.episode_ranges import parse_episode_ranges
from robot_offrl.data.errors import SchemaError, StoreError, StoreExistsError, StoreNotFoundError
from robot_offrl.data.schema import ActionSpace, KeySpec, StoreSchema, check_source
from robot_offrl.data.staging import build_beside
from robot_offrl.data.store import EpisodeStore
from robot_offrl.extras import require

SIDECAR = "meta/robot_offrl.json"
SIDECAR_FORMAT = "robot_offrl.lerobot_sidecar"
IMAGE_PREFIX = "observation.images."
DEPTH_PREFIX = "observation.depth."
OBS_PREFIX = "observation."
# Columns every LeRobot dataset has, which are bookkeeping rather than observations.
BOOKKEEPING = frozenset({"timestamp", "frame_index", "episode_index", "index", "task_index"})
# lerobot 0.3.2 reads these (format v2.1) before touching any episode file.
REQUIRED_META = ("meta/info.json", "meta/episodes.jsonl", "meta/tasks.jsonl", "meta/episodes_stats.jsonl")
SUPPORTED_VERSION = "v2.1"
# LeRobot's per-frame success signal (e.g. pusht); its value at an episode's last frame is our `success`.
SUCCESS_FEATURE = "next.success"
NUMERIC_KINDS = "fiub"  # float, signed/unsigned int, bool


class LeRobotFormatError(StoreError):
    """A LeRobot dataset that cannot be read, or whose features do not fit the episode schema."""


def _lerobot() -> Any:
    """lerobot's dataset module, with hub access switched off and progress bars quiet (local folders only)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    module = require("lerobot.datasets.lerobot_dataset", "lerobot", "LeRobot import/export")
    with contextlib.suppress(Exception):
        import datasets

        datasets.disable_progress_bars()
    return module


# ----------------------------------------------------------------------------------------- import


@dataclass(frozen=True)
class _Column:
    """Where one store key comes from in the LeRobot dataset."""

    feature: str
    spec: KeySpec
    source: str  # "image" | "video" | "array"


def _key_name(feature: str) -> str:
    for prefix in (IMAGE_PREFIX, DEPTH_PREFIX, OBS_PREFIX):
        if feature.startswith(prefix) and len(feature) > len(prefix):
            return feature[len(prefix):]
    return feature


def _image_shape(name: str, shape: Sequence[int], names: Any) -> tuple[int, int, int]:
    """LeRobot writes image shapes as (H, W, C) or (C, H, W) (``names`` says which); we store (H, W, 3)."""
    shape = tuple(int(s) for s in shape)
    channels_first = isinstance(names, list) and names[:1] == ["channels"]
    if len(shape) == 3 and (channels_first or (shape[0] == 3 and shape[2] != 3)):
        shape = (shape[1], shape[2], shape[0])
    if len(shape) != 3 or shape[2] != 3:
        raise SchemaError(f"feature '{name}': image shape {list(shape)} is not RGB (H, W, 3); only RGB cameras import")
    return shape  # type: ignore[return-value]


def _column(name: str, ft: dict[str, Any]) -> _Column:
    dtype, shape = str(ft.get("dtype")), tuple(int(s) for s in ft.get("shape") or ())
    key = _key_name(name)
    if dtype in ("image", "video"):
        return _Column(name, KeySpec(key, "uint8", _image_shape(name, shape, ft.get("names")), "rgb"), dtype)
    try:
        np_dtype = np.dtype(dtype)
    except TypeError:
        np_dtype = np.dtype(object)
    if np_dtype.kind not in NUMERIC_KINDS:
        raise SchemaError(f"feature '{name}' has dtype {dtype}; only numbers, images and videos import")
    if name.startswith(DEPTH_PREFIX) and len(shape) in (2, 3):
        depth_dtype = str(np_dtype) if str(np_dtype) in ("uint8", "uint16") else "float32"
        return _Column(name, KeySpec(key, depth_dtype, shape, "depth"), "array")
    if len(shape) != 1:
        raise SchemaError(
            f"feature '{name}' ({dtype} {list(shape)}) does not fit the episode schema: observations are "
            "1-D vectors, RGB images/videos or observation.depth.* maps"
        )
    return _Column(name, KeySpec(key, "float32", shape, "lowdim"), "array")


def _action_names(ft: dict[str, Any], dim: int) -> list[str] | None:
    names = ft.get("names")
    if isinstance(names, dict) and len(names) == 1:
        names = next(iter(names.values()))
    if isinstance(names, list) and len(names) == dim and all(isinstance(n, str) for n in names):
        return list(names) if len(set(names)) == dim else None
    return None


def _read_sidecar(root: Path) -> dict[str, Any] | None:
    path = root / SIDECAR
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise LeRobotFormatError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        raise LeRobotFormatError(f"{path}: not a robot_offrl sidecar (format {SIDECAR_FORMAT!r} expected)")
    return data


def plan_import(
    features: dict[str, Any], fps: float, robot: str | None, tasks: Sequence[str], sidecar: dict[str, Any] | None,
    flag_column: str | None,
) -> tuple[StoreSchema, list[_Column]]:
    """The store schema for a LeRobot dataset, and where each observation key is read from."""
    if "action" not in features:
        raise SchemaError(f"the dataset has no 'action' feature (features: {', '.join(sorted(features))})")
    action_ft = features["action"]
    action_shape = tuple(action_ft.get("shape") or ())
    if len(action_shape) != 1 or np.dtype(str(action_ft.get("dtype"))).kind not in NUMERIC_KINDS:
        raise SchemaError(f"feature 'action' is {action_ft.get('dtype')} {list(action_shape)}; actions are 1-D numbers")
    columns = [
        _column(name, ft) for name, ft in features.items()
        if name not in BOOKKEEPING and name != "action" and name != flag_column and not name.startswith("next.")
    ]
    if not columns:
        raise SchemaError("the dataset has no observation features")
    names = [c.spec.name for c in columns]
    if len(set(names)) != len(names):
        raise SchemaError(f"observation features map to duplicate key names {names}")
    if sidecar is not None:
        schema = StoreSchema.from_dict(sidecar.get("schema") or {})
        ours = {k.name: k for k in schema.obs}
        theirs = {c.spec.name: c.spec for c in columns}
        if set(ours) != set(theirs) or schema.action.dim != action_shape[0]:
            raise SchemaError(f"{SIDECAR} describes keys {sorted(ours)} but the features give {sorted(theirs)}")
        # The sidecar knows kinds (depth vs rgb) and dtypes the features cannot carry.
        columns = [_Column(c.feature, ours[c.spec.name], c.source) for c in columns]
        return schema, columns
    dim = int(action_shape[0])
    action_names = _action_names(action_ft, dim)
    action = (
        ActionSpace(action_names, ["unknown"] * dim, "absolute", [-math.inf] * dim, [math.inf] * dim)
        if action_names else ActionSpace.unbounded(dim, "absolute")
    )
    unique_tasks = sorted(set(tasks))
    schema = StoreSchema(
        obs=[c.spec for c in columns], action=action, control_rate_hz=fps, robot=robot or "unknown",
        task=unique_tasks[0] if len(unique_tasks) == 1 else "multiple",
        extra={"imported_from": "lerobot", "lerobot_tasks": unique_tasks},
    )
    return schema, columns


def _check_local_dataset(root: Path) -> None:
    """Every file lerobot reads first must be here: it would otherwise try to download them."""
    if not root.is_dir():
        raise StoreNotFoundError(f"{root}: no such folder; pass the root of a local LeRobot dataset")
    missing = [name for name in REQUIRED_META if not (root / name).is_file()]
    if missing:
        raise LeRobotFormatError(
            f"{root}: not a LeRobot {SUPPORTED_VERSION} dataset folder (missing {', '.join(missing)}); "
            "datasets are read from local folders only, never downloaded"
        )
    try:
        info = json.loads((root / "meta/info.json").read_text())
    except (OSError, ValueError) as err:
        raise LeRobotFormatError(f"{root}/meta/info.json: not valid JSON ({err})") from err
    version = info.get("codebase_version") if isinstance(info, dict) else None
    if version != SUPPORTED_VERSION:
        raise LeRobotFormatError(
            f"{root}: LeRobot format {version!r}; this importer reads {SUPPORTED_VERSION} (convert it with lerobot first)"
        )


@contextlib.contextmanager
def _scratch_datasets_cache() -> Iterator[None]:
    """Keep the Arrow copy that ``datasets.load_dataset`` makes of the parquet files in a temporary folder.

    lerobot loads episodes with ``load_dataset("parquet", ...)``, which otherwise leaves a full copy of
    every imported dataset in ~/.cache/huggingface/datasets. The copy is memory-mapped while episodes
    are read, so the folder (under TMPDIR) lives until the import ends.
    """
    import datasets.config

    before = datasets.config.HF_DATASETS_CACHE
    with tempfile.TemporaryDirectory(prefix="robot_offrl_lerobot_") as scratch:
        datasets.config.HF_DATASETS_CACHE = Path(scratch)
        try:
            yield
        finally:
            datasets.config.HF_DATASETS_CACHE = before


def _check_episode_files(root: Path, meta: Any) -> None:
    for ep in range(meta.total_episodes):
        paths = [meta.get_data_file_path(ep)] + [meta.get_video_file_path(ep, k) for k in meta.video_keys]
        for rel in paths:
            if not (root / rel).is_file():
                raise LeRobotFormatError(
                    f"{root}: episode {ep} lacks {rel}; a local dataset must be complete (nothing is downloaded)"
                )


def _frames_from_video(path: Path, timestamps: np.ndarray, fps: float, feature: str) -> np.ndarray:
    """The frame nearest each timestamp (within half a frame), decoded with PyAV as RGB uint8."""
    import av

    times, frames = [], []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                times.append(float(frame.pts * stream.time_base))
                frames.append(frame.to_ndarray(format="rgb24"))
    except (av.error.FFmpegError, IndexError, OSError) as err:
        raise LeRobotFormatError(f"{path}: cannot decode video for '{feature}' ({err})") from err
    if not frames:
        raise LeRobotFormatError(f"{path}: video for '{feature}' has no frames")
    decoded = np.asarray(times)
    nearest = np.abs(decoded[None, :] - timestamps[:, None]).argmin(axis=1)
    gap = np.abs(decoded[nearest] - timestamps)
    if gap.max() > 0.5 / fps:
        step = int(gap.argmax())
        raise LeRobotFormatError(
            f"{path}: no video frame within half a frame of timestamp {timestamps[step]:.4f} s (frame {step})"
        )
    return np.stack([frames[i] for i in nearest])


def _episode_arrays(ds: Any, ep: int, columns: Sequence[_Column], flag_column: str | None) -> tuple[
    dict[str, np.ndarray], np.ndarray, np.ndarray | None, bool | None
]:
    """obs, actions, the flag column (or None) and success (``next.success`` at the last frame, else
    unknown) of one episode, read through lerobot's hf_dataset."""
    start = int(ds.episode_data_index["from"][ep])
    stop = int(ds.episode_data_index["to"][ep])
    rows = ds.hf_dataset.select(range(start, stop))

    def column(name: str) -> np.ndarray:
        return np.stack([np.asarray(v) for v in rows[name]])

    timestamps = column("timestamp").astype(np.float64).reshape(-1)
    obs: dict[str, np.ndarray] = {}
    for col in columns:
        if col.source == "video":
            path = ds.root / ds.meta.get_video_file_path(ep, col.feature)
            obs[col.spec.name] = _frames_from_video(path, timestamps, ds.fps, col.feature)
        elif col.source == "image":
            # lerobot hands images out as float (C, H, W) in [0, 1] (x / 255): round back exactly.
            chw = column(col.feature)
            obs[col.spec.name] = np.rint(chw * 255.0).clip(0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
        else:
            values = column(col.feature)
            obs[col.spec.name] = values.astype(col.spec.dtype).reshape(len(values), *col.spec.shape)
    flags = column(flag_column).reshape(stop - start, -1) if flag_column else None
    success = bool(column(SUCCESS_FEATURE).reshape(-1)[-1]) if SUCCESS_FEATURE in ds.meta.features else None
    return obs, column("action").astype(np.float32), flags, success


def _expert_flags(
    num: int, expert_episodes: str | Sequence[int] | None, non_expert_episodes: str | Sequence[int] | None,
    sidecar_eps: dict[int, dict[str, Any]],
) -> list[bool | None]:
    """Explicit lists win; otherwise the sidecar; None leaves it to the flag column (or expert)."""
    if expert_episodes is not None and non_expert_episodes is not None:
        raise StoreError("pass either an expert list or a non-expert list, not both")
    if isinstance(expert_episodes, str):
        expert_episodes = parse_episode_ranges(expert_episodes, num)
    if isinstance(non_expert_episodes, str):
        non_expert_episodes = parse_episode_ranges(non_expert_episodes, num)
    if expert_episodes is not None:
        chosen = set(expert_episodes)
        return [i in chosen for i in range(num)]
    if non_expert_episodes is not None:
        chosen = set(non_expert_episodes)
        return [i not in chosen for i in range(num)]
    return [sidecar_eps[i]["expert"] if i in sidecar_eps else None for i in range(num)]


def import_lerobot(
    src: str | os.PathLike[str],
    out: str,
    *,
    expert_episodes: str | Sequence[int] | None = None,
    non_expert_episodes: str | Sequence[int] | None = None,
    flag_column: str | None = None,
    durable: bool = False,
) -> EpisodeStore:
    """Convert a local LeRobot dataset into a new store at ``out``; all or nothing (built beside ``out``).

    Episodes are expert unless a list, a flag column (per-frame, constant within each episode;
    ``expert`` is used when present) or our sidecar says otherwise; ``source`` is ``imported``
    unless the sidecar (our own export) carries it.
    """
    root = Path(os.fspath(src))
    if Location.parse(out).exists():
        raise StoreExistsError(f"{out}: already exists; import writes a new store, pick another path")
    _check_local_dataset(root)
    lerobot = _lerobot()
    with _scratch_datasets_cache():
        repo_id = f"local/{root.name}"
        try:
            # Metadata first: LeRobotDataset downloads any episode file it does not find, so check them all.
            _check_episode_files(root, lerobot.LeRobotDatasetMetadata(repo_id, root=root))
            ds = lerobot.LeRobotDataset(repo_id, root=root, video_backend="pyav")
        except LeRobotFormatError:
            raise
        except Exception as err:  # lerobot raises bare ValueError/KeyError/AssertionError on bad metadata
            raise LeRobotFormatError(f"{root}: lerobot cannot load this dataset ({type(err).__name__}: {err})") from err
        meta = ds.meta
        features = dict(meta.features)
        if flag_column is None and "expert" in features:
            flag_column = "expert"
        if flag_column is not None and flag_column not in features:
            raise LeRobotFormatError(f"{root}: flag column '{flag_column}' is not a feature ({', '.join(sorted(features))})")
        sidecar = _read_sidecar(root)
        try:
            schema, columns = plan_import(features, float(meta.fps), meta.robot_type, list(meta.tasks.values()),
                                          sidecar, flag_column)
        except SchemaError as err:
            raise LeRobotFormatError(f"{root}: {err}") from err
        sidecar_eps = {int(e["episode_index"]): e for e in (sidecar or {}).get("episodes", [])}
        experts = _expert_flags(meta.total_episodes, expert_episodes, non_expert_episodes, sidecar_eps)
        with build_beside(out, "data import-lerobot") as path, EpisodeStore.create(path, schema, durable=durable) as store:
            for ep in range(meta.total_episodes):
                obs, actions, flags, success = _episode_arrays(ds, ep, columns, flag_column)
                expert = experts[ep]
                if expert is None and flags is not None:
                    if not (flags == flags[0]).all():
                        raise LeRobotFormatError(f"{root}: episode {ep}: flag column '{flag_column}' changes within the episode")
                    expert = bool(flags[0].any())
                extra = sidecar_eps.get(ep, {})
                attrs = dict(extra.get("attrs") or {})
                if "attrs" not in extra:
                    tasks = list(meta.episodes[ep].get("tasks", []))
                    attrs.update(task=tasks[0] if len(tasks) == 1 else tasks, lerobot_episode_index=ep,
                                 source_dataset=root.name)
                store.append_episode(
                    obs, actions, expert=True if expert is None else expert,
                    source=check_source(extra.get("source", "imported"), episode=ep),
                    success=extra.get("success", success), attrs=attrs,
                )
    return EpisodeStore.open(out, mode="r+", durable=durable)


# ----------------------------------------------------------------------------------------- export


def _features(schema: StoreSchema, video: bool) -> tuple[dict[str, Any], dict[str, str]]:
    """LeRobot features for a schema, and the feature name of each observation key."""
    features: dict[str, Any] = {}
    names: dict[str, str] = {}
    for spec in schema.obs:
        if spec.kind == "rgb":
            name = IMAGE_PREFIX + spec.name
            features[name] = {"dtype": "video" if video else "image", "shape": spec.shape,
                              "names": ["height", "width", "channels"]}
        elif spec.kind == "depth":
            name = DEPTH_PREFIX + spec.name
            features[name] = {"dtype": spec.dtype, "shape": spec.shape, "names": None}
        else:
            name = OBS_PREFIX + spec.name
            features[name] = {"dtype": "float32", "shape": spec.shape, "names": None}
        names[spec.name] = name
    features["action"] = {"dtype": "float32", "shape": (schema.action.dim,), "names": list(schema.action.names)}
    return features, names


def _integer_fps(rate: float, store: str) -> int:
    if not float(rate).is_integer():
        raise StoreError(f"{store}: control rate {rate} Hz is not a whole number; LeRobot datasets need integer fps")
    return int(rate)


@contextlib.contextmanager
def _quiet_logging() -> Iterator[None]:
    """lerobot logs every video it encodes at INFO; a conversion of many episodes should not."""
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


def export_lerobot(store_path: str, out: str, *, video: bool = False, repo_id: str | None = None) -> Path:
    """Write the store's episodes as a new LeRobot dataset folder at ``out`` (built beside it, then renamed).

    ``video=False`` stores frames as PNG (lossless); ``video=True`` as lerobot's AV1 videos (lossy).
    """
    store = EpisodeStore.open(store_path)
    if Location.parse(out).local_path is None:
        raise StoreError(f"{out}: LeRobot datasets are written to a local folder, not a URL")
    schema = store.schema
    fps = _integer_fps(schema.control_rate_hz, store_path)
    features, feature_of = _features(schema, video)
    dataset_cls = _lerobot().LeRobotDataset
    # The SVT-AV1 encoder prints its whole configuration at info level for every video; errors only.
    os.environ.setdefault("SVT_LOG", "1")
    name = Path(out).name
    episodes = []
    with build_beside(out, "data export-lerobot") as path, _quiet_logging():
        ds = dataset_cls.create(repo_id=repo_id or f"robot_offrl/{name}", fps=fps, features=features, root=path,
                                robot_type=schema.robot, use_videos=video, video_backend="pyav")
        for meta in store.episodes:
            ep = store.read_episode(meta.index)
            task = meta.attrs.get("task") if isinstance(meta.attrs.get("task"), str) else schema.task
            for t in range(len(ep)):
                frame = {feature_of[k]: ep.obs[k][t] for k in schema.obs_keys}
                frame["action"] = ep.actions[t]
                ds.add_frame(frame, task=task)
            ds.save_episode()
            episodes.append({"episode_index": meta.index, "uid": meta.uid, "expert": meta.expert,
                             "source": meta.source, "success": meta.success, "attrs": meta.attrs})
        sidecar = {"format": SIDECAR_FORMAT, "version": 1, "schema": schema.to_dict(), "episodes": episodes}
        (Path(path) / SIDECAR).write_text(json.dumps(sidecar, indent=1))
        # Frames are embedded in the parquet files (or encoded into videos); this is lerobot's scratch folder.
        shutil.rmtree(Path(path) / "images", ignore_errors=True)
    return Path(out)
