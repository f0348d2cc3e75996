"""Checkpoints a lab can load without executing code: safetensors weights, YAML/JSON everything else.

A checkpoint is a folder (docs/contracts.md). It is written into a temporary sibling, every file and
the folder are fsynced, and only then is it renamed into place; ``latest`` is updated (also fsynced)
after the rename, so a crash or power cut mid-save leaves the previous checkpoint as the one that
loads. ``meta.json`` records the SHA-256 of every other file, so a checkpoint damaged on disk later
(truncated, bytes flipped, hand-edited) is refused by name instead of loading garbage or, on resume,
silently starting over. Old checkpoints are pruned by step number, never by name, and the one
``latest`` names is never pruned.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from robot_offrl import __version__
from robot_offrl.config import from_yaml, to_yaml
from robot_offrl.errors import ConfigError, UserError
from robot_offrl.fsutil import fsync_path, replace_directory

MODEL_FILE = "model.safetensors"
OPTIM_FILE = "optim.safetensors"
CONFIG_FILE = "config.yaml"
NORM_FILE = "normalization.json"
SCHEMA_FILE = "schema.json"
META_FILE = "meta.json"
LATEST_FILE = "latest"
CHECKPOINT_DIR = "checkpoints"
DIGESTS_KEY = "sha256"  # meta.json: {file name: SHA-256 hex} of every other file in the folder
# 1: digests optional (checkpoints written before they existed). 2: digests of every file required, so
# deleting the "sha256" entry or one file's digest by hand is damage, not a way around the check.
FORMAT_VERSION = 2
_STEP_NAME = re.compile(r"^step_(\d+)$")


class CheckpointError(UserError):
    """A checkpoint folder is missing, incomplete, or holds something other than safetensors."""


@dataclass
class Checkpoint:
    path: Path
    model_state: dict[str, torch.Tensor]
    config: DictConfig
    normalization: dict[str, Any]
    schema: dict[str, Any]
    meta: dict[str, Any]
    optim_state: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def step(self) -> int:
        return int(self.meta.get("step", 0))


def code_version() -> dict[str, str]:
    """Package version plus the git commit when running from a checkout: enough to rebuild a run."""
    commit = "unknown"
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        if out.returncode == 0:
            commit = out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return {"package": __version__, "git_commit": commit, "torch": torch.__version__}


def _plain_tensors(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses shared or non-contiguous storage; a CPU copy of each tensor is always safe."""
    return {name: t.detach().to("cpu").contiguous().clone() for name, t in state.items()}


def flatten_optimizer_state(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state_dict into tensors (safetensors) and a JSON-able remainder."""
    state_dict = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, param_state in state_dict["state"].items():
        for name, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{param_id}.{name}"] = value
            else:
                scalars.setdefault(str(param_id), {})[name] = value
    return _plain_tensors(tensors), {"param_groups": state_dict["param_groups"], "scalars": scalars}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], structure: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, param_id, name = key.split(".", 2)
        state.setdefault(int(param_id), {})[name] = value
    for param_id, values in structure.get("scalars", {}).items():
        state.setdefault(int(param_id), {}).update(values)
    return {"state": state, "param_groups": structure["param_groups"]}


def checkpoint_name(step: int) -> str:
    return f"step_{step:07d}"


def checkpoint_step(path: Path) -> int | None:
    """The step a ``step_N`` folder name encodes; None for anything else (temporaries, stray files)."""
    match = _STEP_NAME.match(path.name)
    return int(match.group(1)) if match else None


def list_checkpoints(root: str | Path) -> list[Path]:
    """``step_N`` folders under a run's ``checkpoints/``, oldest first by step NUMBER.

    Sorting names would put step_10000000 before step_9999999 and prune the newest checkpoint.
    """
    root = Path(root)
    if not root.is_dir():
        return []
    found = [(checkpoint_step(p), p) for p in root.iterdir() if p.is_dir()]
    return [p for step, p in sorted((s, p) for s, p in found if s is not None)]


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_file(path: Path) -> None:
    with path.open("rb") as fh:
        os.fsync(fh.fileno())


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model_state: dict[str, torch.Tensor],
    config: DictConfig,
    normalization: dict[str, Any],
    schema: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    extra_meta: dict[str, Any] | None = None,
    keep: int = 3,
) -> Path:
    root = Path(run_dir) / CHECKPOINT_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / checkpoint_name(step)
    tmp = root / f".tmp_{final.name}_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(_plain_tensors(model_state), str(tmp / MODEL_FILE))
    meta: dict[str, Any] = {"step": step, "format": "robot_offrl.checkpoint", "format_version": FORMAT_VERSION}
    meta["code_version"] = code_version()
    if optimizer is not None:
        optim_tensors, optim_structure = flatten_optimizer_state(optimizer)
        save_file(optim_tensors, str(tmp / OPTIM_FILE))
        meta["optimizer"] = optim_structure
    meta.update(extra_meta or {})
    (tmp / CONFIG_FILE).write_text(to_yaml(config))
    (tmp / NORM_FILE).write_text(json.dumps(normalization, indent=1))
    (tmp / SCHEMA_FILE).write_text(json.dumps(schema, indent=1))
    meta[DIGESTS_KEY] = {p.name: file_digest(p) for p in sorted(tmp.iterdir())}
    (tmp / META_FILE).write_text(json.dumps(meta, indent=1))
    for path in tmp.iterdir():
        _fsync_file(path)
    fsync_path(tmp)
    _move_into_place(tmp, final)
    _write_latest(root, final.name)
    _prune(root, keep, protect=frozenset({final.name}))
    return final


def _move_into_place(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` to ``final`` without a moment where neither the old nor the new ``final`` exists.

    An existing ``final`` is swapped with ``tmp`` in one atomic step where the OS can, else renamed
    aside first; the old folder is deleted only once the new one is in place. Deleting it first (as
    this did before) left no checkpoint of that step if the process died before the rename.
    """
    if final.exists():
        replace_directory(tmp, final, final.with_name(f".old_{final.name}_{os.getpid()}"))
        return
    os.replace(tmp, final)
    fsync_path(final.parent)


def _write_latest(root: Path, name: str) -> None:
    tmp = root / f".{LATEST_FILE}.tmp"
    with tmp.open("w") as fh:
        fh.write(name + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, root / LATEST_FILE)
    fsync_path(root)


def _prune(root: Path, keep: int, protect: frozenset[str] = frozenset()) -> None:
    """Keep the ``keep`` highest steps, plus whatever ``latest`` names and ``protect`` lists."""
    if keep <= 0:
        return
    latest = root / LATEST_FILE
    named = latest.read_text().strip() if latest.is_file() else ""
    for old in list_checkpoints(root)[:-keep]:
        if old.name != named and old.name not in protect:
            shutil.rmtree(old, ignore_errors=True)


def resolve_checkpoint(path: str | Path) -> Path:
    """Accept a checkpoint folder, a run folder, or a run's ``checkpoints/`` folder."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint path '{path}' does not exist")
    if (path / MODEL_FILE).is_file():
        return path
    for root in (path / CHECKPOINT_DIR, path):
        latest = root / LATEST_FILE
        if latest.is_file():
            candidate = root / latest.read_text().strip()
            if (candidate / MODEL_FILE).is_file():
                return candidate
            aside = sorted(root.glob(f".old_{candidate.name}_*"))
            hint = f"; a save of it was interrupted: rename '{aside[0]}' back to '{candidate}'" if aside else ""
            raise CheckpointError(f"'{latest}' names '{candidate.name}', which is missing or incomplete{hint}")
    raise CheckpointError(
        f"'{path}' is neither a checkpoint folder (no {MODEL_FILE}) nor a run folder with {CHECKPOINT_DIR}/{LATEST_FILE}"
    )


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    try:
        return resolve_checkpoint(Path(run_dir) / CHECKPOINT_DIR)
    except CheckpointError:
        return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as err:
        raise CheckpointError(f"checkpoint file '{path}' is missing") from err
    except json.JSONDecodeError as err:
        raise CheckpointError(f"checkpoint file '{path}' is not valid JSON: {err}") from err


def _refuse_non_safetensors(path: Path) -> None:
    """A pickle (torch.save) payload is named as such before anything else looks at the file."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint file '{path}' is missing")
    with path.open("rb") as fh:
        head = fh.read(9)
    # A safetensors file starts with an 8-byte header length followed by a JSON object.
    if len(head) < 9 or head[8:9] != b"{":
        if head[:1] == b"\x80" or head[:2] == b"PK":
            raise CheckpointError(
                f"'{path}' holds a pickle/torch.save payload; robot-offrl only loads safetensors and never unpickles"
            )
        raise CheckpointError(f"'{path}' is not a safetensors file")


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Only safetensors is ever read; a pickle (torch.save) payload is refused, never unpickled."""
    _refuse_non_safetensors(path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"'{path}' is not a readable safetensors file: {err}") from err


def verify_checkpoint(folder: Path, meta: dict[str, Any]) -> None:
    """Compare every file with the SHA-256 meta.json recorded when it was written.

    Format 1 checkpoints (written before digests existed) may have none and are accepted as they are;
    from format 2 on every file in the folder must have its digest.
    """
    digests = meta.get(DIGESTS_KEY)
    required = int(meta.get("format_version", 1)) >= 2
    if digests is None and not required:
        return
    if not isinstance(digests, dict):
        raise CheckpointError(f"checkpoint '{folder}' is damaged: meta.json's {DIGESTS_KEY!r} is missing or not a mapping")
    if required:
        unlisted = sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != META_FILE and p.name not in digests)
        if unlisted or MODEL_FILE not in digests:
            raise CheckpointError(
                f"checkpoint '{folder}' is damaged: {META_FILE} records no SHA-256 for {unlisted or [MODEL_FILE]}"
            )
    for name, expected in sorted(digests.items()):
        path = folder / name
        if not path.is_file():
            raise CheckpointError(f"checkpoint '{folder}' is damaged: '{name}' is missing")
        if file_digest(path) != expected:
            raise CheckpointError(
                f"checkpoint '{folder}' is damaged: '{path}' does not match the SHA-256 recorded in {META_FILE} "
                "(truncated, corrupted or edited after it was written)"
            )


def read_checkpoint_config(folder: Path) -> DictConfig:
    """config.yaml as a DictConfig; unreadable YAML is one line naming the file, not a parser traceback."""
    path = folder / CONFIG_FILE
    try:
        return from_yaml(path.read_text())
    except FileNotFoundError as err:
        raise CheckpointError(f"checkpoint file '{path}' is missing") from err
    except (UnicodeDecodeError, yaml.YAMLError, OmegaConfBaseException, ConfigError, ValueError) as err:
        first = " ".join(str(err).split())[:200]
        raise CheckpointError(f"checkpoint file '{path}' is not a readable YAML config mapping ({first})") from err


def load_checkpoint(path: str | Path, with_optimizer: bool = False) -> Checkpoint:
    folder = resolve_checkpoint(path)
    meta = _read_json(folder / META_FILE)
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint file '{folder / META_FILE}' does not hold a JSON object")
    if not isinstance(meta.get("format_version", 1), int) or meta.get("format_version", 1) > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint '{folder}' has format_version {meta['format_version']}; upgrade robot-offrl to load it"
        )
    for name in (MODEL_FILE, OPTIM_FILE):
        if name == MODEL_FILE or (folder / name).is_file():
            _refuse_non_safetensors(folder / name)
    verify_checkpoint(folder, meta)
    config = read_checkpoint_config(folder)
    optim_state: dict[str, torch.Tensor] = {}
    if with_optimizer and (folder / OPTIM_FILE).is_file():
        optim_state = _load_tensors(folder / OPTIM_FILE)
    return Checkpoint(
        path=folder,
        model_state=_load_tensors(folder / MODEL_FILE),
        config=config,
        normalization=_read_json(folder / NORM_FILE),
        schema=_read_json(folder / SCHEMA_FILE),
        meta=meta,
        optim_state=optim_state,
    )
