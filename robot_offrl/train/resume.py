"""Resuming a run: which checkpoint to continue from, whether it may be continued, and restoring it.

Why a module of its own: each decision here used to fail silently. A damaged newest checkpoint made
resume start again at step 0 (and then overwrite the good ones); a resume with other settings either
raised a shape traceback or kept the checkpoint's optimiser learning rate while the run's config.yaml
recorded the new one. Now:

- the checkpoint ``latest`` names is verified (SHA-256, see robot_offrl/checkpoint.py); a damaged or missing one
  is an error, unless ``trainer.resume_fallback=true`` asks to continue from the newest good older
  one, which is then said out loud;
- the settings that decide what is trained are compared with the checkpoint's; any difference is
  refused with the keys named. Only learning rates can be changed cleanly mid-run, and only when
  listed in ``trainer.resume_changes`` (the new value is then put into the optimiser and scheduler).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from robot_offrl.algos.config import ACTING_SETTINGS
from robot_offrl.checkpoint import (
    CHECKPOINT_DIR,
    LATEST_FILE,
    Checkpoint,
    CheckpointError,
    checkpoint_step,
    list_checkpoints,
    load_checkpoint,
    unflatten_optimizer_state,
)
from robot_offrl.errors import ConfigError
from robot_offrl.train.config import TrainerConfig, legacy_values
from robot_offrl.train.settings import RESUME_IGNORED

# Settings that can be applied to a restored optimiser without rebuilding anything, mapped to the
# parameter group each one sets.
ADJUSTABLE = {"trainer.lr": "policy", "critic.lr": "critic"}


def flatten_config(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"trainer.lr": 1e-4, ...}: dotted keys of a nested mapping, tuples as lists."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


def config_differences(
    saved: DictConfig | Mapping[str, Any],
    wanted: DictConfig | Mapping[str, Any],
    *,
    ignored: frozenset[str] = RESUME_IGNORED,
) -> dict[str, tuple[Any, Any]]:
    """Training settings that differ, as {key: (saved, wanted)}; resume and experiment reuse share it.

    A key the saved run lacks counts as the value runs had before the key existed (``legacy_values``:
    e.g. the hinge Lipschitz form), so an old run is never passed off as one trained with today's
    defaults. Other keys only one side has are not compared: options added later keep their defaults.
    """
    old = {**legacy_values(), **flatten_config(_plain(saved))}
    new = flatten_config(_plain(wanted))
    return {
        key: (old[key], new[key])
        for key in sorted(old.keys() & new.keys())
        if key not in ignored and key not in ACTING_SETTINGS and old[key] != new[key]
    }


def acting_differences(
    saved: DictConfig | Mapping[str, Any], wanted: DictConfig | Mapping[str, Any]
) -> dict[str, Any]:
    """The acting settings (``ACTING_SETTINGS``) ``wanted`` asks for that a saved run differs in, as
    PolicyRuntime options: {"num_inference_steps": 6}. A run acts with its own stored values unless told
    otherwise, so a caller reusing it under a changed default passes these on to keep its word."""
    old = flatten_config(_plain(saved))
    new = flatten_config(_plain(wanted))
    return {
        option: new[key] for key, option in ACTING_SETTINGS.items()
        if key in new and old.get(key) != new[key]
    }


def _plain(cfg: DictConfig | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return cfg


def accepted_changes(trainer: TrainerConfig) -> set[str]:
    """``trainer.resume_changes``, each checked to be a setting a resume can apply cleanly."""
    names = list(trainer.resume_changes)
    for name in names:
        if name not in ADJUSTABLE:
            raise ConfigError(
                f"trainer.resume_changes lists {name!r}, which a resumed run cannot change (the weights were "
                f"trained with it); only {sorted(ADJUSTABLE)} can. Use a new out= or resume=false"
            )
    return set(names)


def check_resume_config(ckpt: Checkpoint, cfg: DictConfig, trainer: TrainerConfig) -> set[str]:
    """Refuse to continue ``ckpt`` under other training settings; returns the accepted changes."""
    accepted = accepted_changes(trainer)
    diffs = config_differences(ckpt.config, cfg)
    refused = {k: v for k, v in diffs.items() if k not in accepted}
    if refused:
        listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in refused.items())
        hint = "use a new out= or resume=false to start over"
        if set(refused) <= set(ADJUSTABLE):
            hint += f", or accept the change with trainer.resume_changes=[{','.join(refused)}]"
        raise ConfigError(f"cannot resume {ckpt.path} with other settings than it was trained with ({listed}); {hint}")
    return {k for k in diffs if k in accepted}


def _latest_name(root: Path) -> str | None:
    latest = root / LATEST_FILE
    if not latest.is_file():
        return None
    try:
        return latest.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def choose_checkpoint(run_dir: Path, fallback: bool, say: Callable[[str], None]) -> Checkpoint | None:
    """The checkpoint to continue from; None only when the run has none at all (a fresh start)."""
    root = run_dir / CHECKPOINT_DIR
    folders = list_checkpoints(root)
    named = _latest_name(root)
    if named is None and not folders:
        return None
    newest_first = folders[::-1]
    named_step = checkpoint_step(root / named) if named else None
    candidates: list[Path | CheckpointError] = list(newest_first)
    if named is not None and named_step is None:
        candidates.insert(0, CheckpointError(f"'{root / LATEST_FILE}' is damaged (it holds {named[:40]!r})"))
    elif named_step is not None:
        older = [p for p in newest_first if (checkpoint_step(p) or 0) < named_step]
        candidates = [root / named, *older]
    failures: list[str] = []
    for path in candidates:
        try:
            if isinstance(path, CheckpointError):
                raise path
            ckpt = load_checkpoint(path, with_optimizer=True)
        except CheckpointError as err:
            if not fallback:
                raise CheckpointError(
                    f"cannot resume {run_dir}: {err}. Nothing was changed; pass trainer.resume_fallback=true to "
                    "continue from the newest good older checkpoint, or resume=false to start over"
                ) from err
            failures.append(str(err))
            continue
        if failures:
            say(f"resume: skipped {'; '.join(failures)}; continuing from {ckpt.path} "
                f"(step {ckpt.step}) because trainer.resume_fallback=true")
        return ckpt
    raise CheckpointError(
        f"cannot resume {run_dir}: no good checkpoint left ({'; '.join(failures) or 'none found'}); "
        "use resume=false to start over"
    )


def restore(ckpt: Checkpoint, cfg: DictConfig, agent: torch.nn.Module, optimizer: torch.optim.Optimizer,
            scheduler: torch.optim.lr_scheduler.LambdaLR, accepted: set[str]) -> int:
    """Load weights, optimiser and scheduler state; accepted learning-rate changes take effect now."""
    try:
        agent.load_state_dict(ckpt.model_state)
        if "optimizer" in ckpt.meta:
            optimizer.load_state_dict(unflatten_optimizer_state(ckpt.optim_state, ckpt.meta["optimizer"]))
    except (RuntimeError, ValueError, KeyError) as err:
        first = " ".join(str(err).split())[:300]
        raise CheckpointError(f"{ckpt.path} does not fit the networks this config builds: {first}") from err
    scheduler.load_state_dict(ckpt.meta.get("scheduler", {"last_epoch": ckpt.step}))
    scheduler.last_epoch = ckpt.step
    for key in accepted:
        _set_base_lr(optimizer, scheduler, ADJUSTABLE[key], float(OmegaConf.select(cfg, key)))
    return ckpt.step


def _set_base_lr(optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LambdaLR, group_name: str,
                 lr: float) -> None:
    """The schedule multiplies base_lrs; setting only the group's lr would be undone by the next step."""
    for i, group in enumerate(optimizer.param_groups):
        if group.get("name") == group_name:
            scheduler.base_lrs[i] = lr
            group["initial_lr"] = lr
            group["lr"] = lr * scheduler.lr_lambdas[i](scheduler.last_epoch)


@dataclass(frozen=True)
class ResumePoint:
    checkpoint: Checkpoint
    accepted: frozenset[str]  # trainer.resume_changes that differ and take effect on restore


def prepare_resume(
    cfg: DictConfig, trainer: TrainerConfig, run_dir: Path, say: Callable[[str], None]
) -> ResumePoint | None:
    """Choose and check the checkpoint before any data or network is built, so a refusal is instant.

    ``cfg`` is the composed config (compared key by key with the checkpoint's), ``trainer`` its typed
    trainer section.
    """
    if not bool(cfg.resume):
        return None
    ckpt = choose_checkpoint(run_dir, trainer.resume_fallback, say)
    if ckpt is None:
        return None
    return ResumePoint(ckpt, frozenset(check_resume_config(ckpt, cfg, trainer)))


def resume(point: ResumePoint | None, cfg: DictConfig, agent: torch.nn.Module, optimizer: torch.optim.Optimizer,
           scheduler: torch.optim.lr_scheduler.LambdaLR, say: Callable[[str], None]) -> int:
    """The step to continue from (0 for a fresh run) after restoring everything the checkpoint holds."""
    if point is None:
        return 0
    step = restore(point.checkpoint, cfg, agent, optimizer, scheduler, set(point.accepted))
    if point.accepted:
        say(f"resume: {', '.join(f'{k}={OmegaConf.select(cfg, k)}' for k in sorted(point.accepted))} applied from "
            f"step {step} (trainer.resume_changes)")
    return step
