"""Checkpoints a lab can load without executing code: safetensors weights, YAML/JSON everything else.

A checkpoint is a folder (docs/contracts.md). It is written into a temporary sibling and renamed
into place, and ``latest`` is updated after the rename, so a crash mid-save leaves the previous
checkpoint as the one that loads.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from robot_offrl import __version__
from robot_offrl.config import from_yaml, to_yaml
from robot_offrl.errors import UserError

MODEL_FILE = "model.safetensors"
OPTIM_FILE = "optim.safetensors"
CONFIG_FILE = "config.yaml"
NORM_FILE = "normalization.json"
SCHEMA_FILE = "schema.json"
META_FILE = "meta.json"
LATEST_FILE = "latest"
CHECKPOINT_DIR = "checkpoints"


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
    final = root / f"step_{step:07d}"
    tmp = root / f".tmp_step_{step:07d}_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file(_plain_tensors(model_state), str(tmp / MODEL_FILE))
    meta: dict[str, Any] = {"step": step, "format": "robot_offrl.checkpoint", "format_version": 1}
    meta["code_version"] = code_version()
    if optimizer is not None:
        optim_tensors, optim_structure = flatten_optimizer_state(optimizer)
        save_file(optim_tensors, str(tmp / OPTIM_FILE))
        meta["optimizer"] = optim_structure
    meta.update(extra_meta or {})
    (tmp / CONFIG_FILE).write_text(to_yaml(config))
    (tmp / NORM_FILE).write_text(json.dumps(normalization, indent=1))
    (tmp / SCHEMA_FILE).write_text(json.dumps(schema, indent=1))
    (tmp / META_FILE).write_text(json.dumps(meta, indent=1))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _write_latest(root, final.name)
    _prune(root, keep)
    return final


def _write_latest(root: Path, name: str) -> None:
    tmp = root / f".{LATEST_FILE}.tmp"
    tmp.write_text(name + "\n")
    os.replace(tmp, root / LATEST_FILE)


def _prune(root: Path, keep: int) -> None:
    if keep <= 0:
        return
    done = sorted(p for p in root.glob("step_*") if p.is_dir())
    for old in done[:-keep]:
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
            raise CheckpointError(f"'{latest}' names '{candidate.name}', which is missing or incomplete")
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


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Only safetensors is ever read; a pickle (torch.save) payload is refused, never unpickled."""
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
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"'{path}' is not a readable safetensors file: {err}") from err


def load_checkpoint(path: str | Path, with_optimizer: bool = False) -> Checkpoint:
    folder = resolve_checkpoint(path)
    try:
        config = from_yaml((folder / CONFIG_FILE).read_text())
    except FileNotFoundError as err:
        raise CheckpointError(f"checkpoint file '{folder / CONFIG_FILE}' is missing") from err
    meta = _read_json(folder / META_FILE)
    if meta.get("format_version", 1) > 1:
        raise CheckpointError(
            f"checkpoint '{folder}' has format_version {meta['format_version']}; upgrade robot-offrl to load it"
        )
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
