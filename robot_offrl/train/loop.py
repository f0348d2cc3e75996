"""The training loop: one Agent, one optimiser, any algo (bc, bc_all, idql, rise), any device.

Why it looks the way it does:
- every batch and every random draw is a function of (seed, step, rank), so resuming from a
  checkpoint reproduces an uninterrupted run exactly on CPU (tests/train check this);
- the agent owns its losses, EMA and targets; this loop only moves data, steps the optimiser,
  logs, validates and writes checkpoints (rank 0 only under torchrun);
- a NaN/inf loss stops the run before the optimiser step, so the last checkpoint on disk is
  the last good one.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from robot_offrl.algos import Agent, build_agent
from robot_offrl.algos.config import AgentConfig
from robot_offrl.algos.schedule import ScheduledBatchSampler, UpdateSchedule
from robot_offrl.checkpoint import latest_checkpoint, save_checkpoint
from robot_offrl.data import EpisodeStore, NormStats
from robot_offrl.data.sampler import WindowDataset, collate_windows, to_device
from robot_offrl.device import autocast, autocast_dtype, maybe_compile, select_device
from robot_offrl.errors import ConfigError, UserError
from robot_offrl.models.conv1d import set_conv_weight_grad
from robot_offrl.train import distributed
from robot_offrl.train.batching import StepBatchSampler, surface_worker_errors
from robot_offrl.train.config import RunConfig, TrainerConfig
from robot_offrl.train.gradients import clip_gradients
from robot_offrl.train.logging import RunLogger
from robot_offrl.train.resume import prepare_resume, resume
from robot_offrl.train.store_checks import check_store_fits
from robot_offrl.train.windows import build_windows


class TrainingDiverged(UserError):
    """A loss became NaN/inf; training stopped and the last good checkpoint was kept."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    checkpoint: Path | None
    losses: dict[str, float] = field(default_factory=dict)
    val_losses: dict[str, float] = field(default_factory=dict)
    loss_history: list[dict[str, float]] = field(default_factory=list)


def checkpoint_schema(store: EpisodeStore, dataset: WindowDataset) -> dict[str, Any]:
    """What the runtime needs to rebuild the observation pipeline: the store schema and the keys used."""
    return {
        "store": store.schema.to_dict(),
        "obs_info": dataset.obs_info.to_dict(),
        "obs_keys": list(dataset.obs_info.keys),
    }


FUSED_ADAMW_DEVICES = ("cpu", "cuda")  # where auto picks the fused kernel (trainer.optimizer_impl in train/config.py)


def adamw_impl_flags(impl: str, params: Iterable[torch.nn.Parameter]) -> dict[str, bool]:
    """AdamW's implementation flags for ``trainer.optimizer_impl``; auto resolves by parameter device."""
    if impl == "auto":
        on_fused_device = all(p.device.type in FUSED_ADAMW_DEVICES for p in params)
        return {"fused": True} if on_fused_device else {}
    return {"foreach": False} if impl == "plain" else {impl: True}


def make_optimizer(agent: Agent, run: RunConfig) -> torch.optim.Optimizer:
    groups = agent.param_groups()
    t = run.trainer
    param_groups = [{"params": groups["policy"], "lr": t.lr, "name": "policy"}]
    if "critic" in groups:
        param_groups.append({"params": groups["critic"], "lr": run.agent.critic.lr, "name": "critic"})
    return torch.optim.AdamW(
        param_groups, weight_decay=t.weight_decay, betas=(t.betas[0], t.betas[1]),
        **adamw_impl_flags(t.optimizer_impl, agent.parameters()),
    )


def make_scheduler(optimizer: torch.optim.Optimizer, trainer: TrainerConfig) -> torch.optim.lr_scheduler.LambdaLR:
    from diffusers.optimization import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(
        optimizer, num_warmup_steps=trainer.warmup_steps, num_training_steps=trainer.steps
    )


class Trainer:
    def __init__(
        self, cfg: DictConfig, dist_info: distributed.DistInfo | None = None, run: RunConfig | None = None
    ) -> None:
        # Parsed once per run: every check (each section's and the cross-section ones) before any data is read.
        self.settings = run = run if run is not None else RunConfig.from_cfg(cfg)
        self.cfg = cfg  # as composed: saved with each checkpoint and compared on resume
        t = run.trainer
        self.dist = dist_info or distributed.from_environment()
        self.device = select_device(t.device, self.dist.local_rank if self.dist.enabled else None)
        self.amp_dtype = autocast_dtype(t.amp, self.device)
        self.run_dir = run.out
        self.seed = run.seed

        self._say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if self.dist.is_main else (lambda msg: None)
        self._resume_point = prepare_resume(cfg, t, self.run_dir, self._say)
        self.store = self._open_store_with_split()
        check_store_fits(cfg, self.store, run.agent.algo)
        self.norm_stats: NormStats = self.store.norm_stats()
        use_split = t.val_fraction > 0
        # Only rank 0 writes the neighbour cache; the others build the same index in memory.
        self.train_set = self._windows(
            run.agent, split="train" if use_split else None, write_neighbor_cache=self.dist.is_main
        )
        self.val_set = self._build_val_set() if use_split else None
        # Which steps train the policy on augmented pairs alone, with no critic update (algos/schedule.py).
        self.schedule = UpdateSchedule.for_training(run.agent.algo.nn_augment, self.train_set.num_augmented)
        torch.manual_seed(self.seed)
        self.agent = build_agent(run.agent, self.train_set.obs_info, self.train_set.action_dim).to(self.device)
        set_conv_weight_grad(self.agent, t.conv_weight_grad)
        self.optimizer = make_optimizer(self.agent, run)
        self.scheduler = make_scheduler(self.optimizer, t)
        self.start_step = self._maybe_resume()
        model: torch.nn.Module = self.agent
        if self.dist.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            # Augmented-only steps leave the critic out of the graph; DDP must expect unused parameters then.
            model = DistributedDataParallel(
                self.agent, device_ids=device_ids, find_unused_parameters=self.schedule.active
            )
        self.loss_model = maybe_compile(model, t.compile, t.compile_backend)
        self.logger = RunLogger(self.run_dir, enabled=self.dist.is_main, progress=t.progress)

    # -- setup -------------------------------------------------------------------------------------
    def _open_store_with_split(self) -> EpisodeStore:
        """All methods trained on one store share its held-out episodes, so a split is stored once."""
        data = self.settings.data
        store = EpisodeStore.open(data, mode="r")
        fraction = self.settings.trainer.val_fraction
        if fraction > 0 and store.split is None and self.dist.is_main:
            with EpisodeStore.open(data, mode="r+") as writable:  # frees the write lock at once
                writable.set_split(fraction, seed=self.seed)
            store = EpisodeStore.open(data, mode="r")
        distributed.barrier(self.dist)
        if self.dist.enabled and not self.dist.is_main:
            store = EpisodeStore.open(data, mode="r")
        return store

    def _build_val_set(self) -> WindowDataset | None:
        """Validation windows: the held-out episodes, same filter, no augmentation (plain BC loss)."""
        if not self.store.split_indices("val"):
            return None
        try:
            return self._windows(self.settings.agent, split="val", augment=False)
        except ConfigError:
            return None  # e.g. bc-expert with no expert episode among the held-out ones

    def _windows(self, agent: AgentConfig, split: str | None, **kw: Any) -> WindowDataset:
        return build_windows(
            self.store, agent, obs_keys=self.settings.obs_keys, cache_in_ram=self.settings.trainer.cache_in_ram,
            seed=self.seed, split=split, norm_stats=self.norm_stats, **kw,
        )

    def _maybe_resume(self) -> int:
        """Checkpoint choice, settings check and restore live in train/resume.py (docs/training.md)."""
        return resume(self._resume_point, self.cfg, self.agent, self.optimizer, self.scheduler, self._say)

    def _loader(
        self, dataset: WindowDataset, start: int, end: int, seed: int, schedule: UpdateSchedule | None = None
    ) -> DataLoader:
        args = (self.settings.trainer.batch_size, seed, start, end, self.dist.rank, self.dist.world_size)
        sampler = (
            ScheduledBatchSampler(dataset.num_base, dataset.num_augmented, schedule, *args)
            if schedule is not None and schedule.active
            else StepBatchSampler(len(dataset), *args)
        )
        workers = self.settings.trainer.num_workers
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=collate_windows,
            num_workers=workers,
            persistent_workers=False,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if workers > 0 else None,
        )

    # -- the loop ----------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        cfg = self.settings.trainer
        total = cfg.steps
        result = TrainResult(run_dir=self.run_dir, step=self.start_step, checkpoint=latest_checkpoint(self.run_dir))
        if self.start_step >= total:
            return result
        self.logger.start(self.cfg, total, self.start_step, describe_data(self.train_set, self.store))
        self.agent.train()
        last_time, last_step = time.perf_counter(), self.start_step
        try:
            for step, batch in zip(
                range(self.start_step, total),
                surface_worker_errors(self._loader(self.train_set, self.start_step, total, self.seed, self.schedule)),
                strict=True,
            ):
                losses = self._train_step(step, batch)
                done = step + 1
                result.step = done
                if done % cfg.log_every == 0 or done == total:
                    now = time.perf_counter()
                    rate = (done - last_step) / max(now - last_time, 1e-9)
                    last_time, last_step = now, done
                    scalars = {k: float(distributed.all_reduce_mean(v, self.dist)) for k, v in losses.items()}
                    scalars.update(self._lr_scalars())
                    # Merged: critic scalars are absent on augmented-only steps; keep their latest values.
                    result.losses = {**result.losses, **scalars}
                    result.loss_history.append({"step": done, **scalars})
                    self.logger.log("train", done, scalars, steps_per_s=rate)
                if self.val_set is not None and (done % cfg.val_every == 0 or done == total):
                    result.val_losses = self.validate(done)
                    self.logger.log("val", done, result.val_losses)
                if done % cfg.checkpoint_every == 0 or done == total:
                    result.checkpoint = self.save(done) or result.checkpoint
                self.logger.advance(done, result.losses)
        finally:
            self.logger.close()
        return result

    def _train_step(self, step: int, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        torch.manual_seed((self.seed * 7_919 + step) * max(1, self.dist.world_size) + self.dist.rank)
        batch = to_device(batch, self.device)
        update_critic = not self.schedule.augmented_only(step)  # augmented pairs never reach V or Q
        with autocast(self.device, self.amp_dtype):
            losses = self.loss_model(batch, step, update_critic)
        loss = losses["loss"]
        if not torch.isfinite(loss.detach()).all():
            bad = {k: float(v.detach()) for k, v in losses.items() if not math.isfinite(float(v.detach()))}
            last = latest_checkpoint(self.run_dir)
            raise TrainingDiverged(
                f"loss became non-finite at step {step} ({bad}); training stopped before the optimiser step. "
                f"Last good checkpoint: {last or 'none yet'}. Lower trainer.lr, check the data with "
                "`robot-offrl data validate`, or raise trainer.grad_clip"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norms = clip_gradients(self.optimizer, self.settings.trainer.grad_clip, self.settings.trainer.grad_clip_mode)
        self.optimizer.step()
        self.scheduler.step()
        self.agent.after_optimizer_step(step, critic_updated=update_critic)
        return {**{k: v.detach() for k, v in losses.items()}, **grad_norms}

    def _lr_scalars(self) -> dict[str, float]:
        return {f"lr/{g.get('name', i)}": float(g["lr"]) for i, g in enumerate(self.optimizer.param_groups)}

    @torch.no_grad()
    def validate(self, step: int) -> dict[str, float]:
        """Held-out losses with a fixed set of batches, so the curve compares like with like."""
        assert self.val_set is not None
        self.agent.eval()
        rng_state = torch.get_rng_state()
        totals: dict[str, float] = {}
        n = self.settings.trainer.val_batches
        try:
            for i, batch in enumerate(surface_worker_errors(self._loader(self.val_set, 0, n, self.seed + 1))):
                torch.manual_seed(self.seed + 1_000 + i)
                with autocast(self.device, self.amp_dtype):
                    losses = self.agent.compute_losses(to_device(batch, self.device), step)
                for k, v in losses.items():
                    totals[k] = totals.get(k, 0.0) + float(v) / n
        finally:
            torch.set_rng_state(rng_state)
            self.agent.train()
        return totals

    def save(self, step: int) -> Path | None:
        if not self.dist.is_main:
            distributed.barrier(self.dist)
            return None
        path = save_checkpoint(
            self.run_dir,
            step,
            self.agent.state_dict(),
            self.cfg,
            self.norm_stats.to_dict(),
            checkpoint_schema(self.store, self.train_set),
            optimizer=self.optimizer,
            extra_meta={"scheduler": self.scheduler.state_dict(), "world_size": self.dist.world_size},
            keep=self.settings.trainer.keep_checkpoints,
        )
        distributed.barrier(self.dist)
        return path


def describe_data(dataset: WindowDataset, store: EpisodeStore) -> dict[str, Any]:
    return {
        "store": store.url,
        "episodes": store.num_episodes,
        "windows": dataset.num_base,
        "augmented_pairs": dataset.num_augmented,
    }


def train(cfg: DictConfig) -> TrainResult:
    """Train per ``cfg`` (a composed ``configs/train.yaml``); works the same under torchrun."""
    run = RunConfig.from_cfg(cfg)
    info = distributed.from_environment()
    device = select_device(run.trainer.device, info.local_rank if info.enabled else None)
    distributed.init_process_group(info, device)
    try:
        return Trainer(cfg, info, run).run()
    finally:
        distributed.shutdown()


def write_summary(result: TrainResult) -> None:
    (result.run_dir / "train_summary.json").write_text(
        json.dumps(
            {"step": result.step, "checkpoint": str(result.checkpoint), "losses": result.losses,
             "val_losses": result.val_losses},
            indent=1,
        )
    )
