"""What a person watching a run sees: a progress bar, TensorBoard curves and a JSONL log.

Only rank 0 logs under torchrun; other ranks get a logger that does nothing, so the loop never
branches on rank to decide whether to print.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

# Losses shown in the progress bar; everything goes to TensorBoard and the JSONL log.
PROGRESS_KEYS = ("loss", "policy_loss", "q_loss", "v_loss")


class RunLogger:
    def __init__(self, run_dir: Path, enabled: bool = True, progress: bool = True) -> None:
        self.enabled = enabled
        self.run_dir = run_dir
        self._progress_enabled = progress and enabled
        self._bar: Any = None
        self._writer: Any = None
        self._jsonl: Any = None

    def start(self, cfg: DictConfig, total: int, start: int, data: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(str(self.run_dir / "tensorboard"))
        self._jsonl = (self.run_dir / "train_log.jsonl").open("a")
        self._write({"event": "start", "step": start, "total": total, "data": data, "algo": cfg.algo.name})
        if self._progress_enabled:
            from tqdm import tqdm

            # Redrawn often in a terminal; in a log file (CI, nohup) every redraw is a line, so rarely.
            interval = 0.5 if sys.stderr.isatty() else 60.0
            self._bar = tqdm(total=total, initial=start, desc=f"train {cfg.algo.name}", unit="step",
                             dynamic_ncols=True, file=sys.stderr, mininterval=interval, maxinterval=interval)

    def log(self, phase: str, step: int, scalars: dict[str, float], steps_per_s: float | None = None) -> None:
        if not self.enabled:
            return
        if self._writer is not None:
            for key, value in scalars.items():
                self._writer.add_scalar(f"{phase}/{key}", value, step)
            if steps_per_s is not None:
                self._writer.add_scalar("perf/steps_per_s", steps_per_s, step)
        record: dict[str, Any] = {"event": phase, "step": step, **scalars}
        if steps_per_s is not None:
            record["steps_per_s"] = round(steps_per_s, 3)
        self._write(record)

    def advance(self, step: int, losses: dict[str, float]) -> None:
        if self._bar is None:
            return
        shown = {k: f"{losses[k]:.4f}" for k in PROGRESS_KEYS if k in losses}
        self._bar.set_postfix(shown, refresh=False)
        self._bar.update(step - self._bar.n)  # update() honours mininterval; refresh() would not

    def _write(self, record: dict[str, Any]) -> None:
        if self._jsonl is not None:
            self._jsonl.write(json.dumps(record) + "\n")
            self._jsonl.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
