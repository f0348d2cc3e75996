"""Normalisation statistics of low-dim observations and actions.

Computed once over the committed episodes and cached in the store (keyed by the index generation, so
adding or deleting episodes invalidates them); the checkpoint copies them so the runtime normalises
exactly as training did.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robot_offrl.data.errors import StoreCorruptError, StoreError

ACTIONS_KEY = "actions"
# A range narrower than this is treated as constant (normalises to 0) instead of dividing by ~0.
MIN_RANGE = 1e-6
# Steps per read while streaming over a store: bounds memory for low-dim arrays of any length.
BLOCK_STEPS = 65536


@dataclass(frozen=True)
class KeyStats:
    min: np.ndarray
    max: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    def to_dict(self) -> dict[str, list[float]]:
        return {n: getattr(self, n).astype(float).tolist() for n in ("min", "max", "mean", "std")}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KeyStats:
        try:
            return cls(*(np.asarray(data[n], dtype=np.float32) for n in ("min", "max", "mean", "std")))
        except (KeyError, TypeError, ValueError) as err:
            raise StoreCorruptError(f"normalisation statistics entry is malformed: {err}") from err


@dataclass(frozen=True)
class NormStats:
    """Per-key min/max/mean/std; ``normalize`` maps [min, max] to [-1, 1] as the contract asks."""

    keys: dict[str, KeyStats]
    num_steps: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> KeyStats:
        try:
            return self.keys[key]
        except KeyError:
            raise StoreError(
                f"no normalisation statistics for key '{key}' (have: {', '.join(self.keys)}); images are "
                "not normalised here"
            ) from None

    def _scale(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        s = self[key]
        rng = s.max - s.min
        half = np.where(rng > MIN_RANGE, rng / 2.0, 1.0).astype(np.float32)
        centre = ((s.max + s.min) / 2.0).astype(np.float32)
        return centre, half

    def normalize(self, key: str, x: Any) -> Any:
        """x in the key's units -> [-1, 1]; works for numpy arrays and torch tensors."""
        centre, half = self._scale(key)
        return (x - _like(centre, x)) / _like(half, x)

    def unnormalize(self, key: str, x: Any) -> Any:
        centre, half = self._scale(key)
        return x * _like(half, x) + _like(centre, x)

    def to_dict(self) -> dict[str, Any]:
        return {"num_steps": self.num_steps, "keys": {k: v.to_dict() for k, v in self.keys.items()}}

    def non_finite(self) -> list[str]:
        """``key.field`` of every statistic holding NaN or inf (a tampered checkpoint, an old cache)."""
        return [
            f"{key}.{n}" for key, s in self.keys.items() for n in ("min", "max", "mean", "std")
            if not np.isfinite(getattr(s, n)).all()
        ]

    def is_finite(self) -> bool:
        """False when any statistic is NaN or inf (e.g. a cache written before such values were refused)."""
        return not self.non_finite()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NormStats:
        try:
            keys = {k: KeyStats.from_dict(v) for k, v in data["keys"].items()}
            return cls(keys=keys, num_steps=int(data.get("num_steps", 0)))
        except (KeyError, AttributeError, TypeError) as err:
            raise StoreCorruptError(f"normalisation statistics are malformed: {err}") from err


def _like(values: np.ndarray, x: Any) -> Any:
    if type(x).__module__.startswith("torch"):
        import torch

        return torch.as_tensor(values, dtype=x.dtype, device=x.device)
    return values


class _Accumulator:
    """Streaming min/max/mean/var (Chan et al. parallel update) in float64."""

    def __init__(self, dim: int) -> None:
        self.n = 0
        self.mean = np.zeros(dim)
        self.m2 = np.zeros(dim)
        self.min = np.full(dim, np.inf)
        self.max = np.full(dim, -np.inf)

    def update(self, block: np.ndarray) -> None:
        block = block.astype(np.float64).reshape(len(block), -1)
        if len(block) == 0:
            return
        n_b = len(block)
        mean_b = block.mean(axis=0)
        m2_b = ((block - mean_b) ** 2).sum(axis=0)
        delta = mean_b - self.mean
        total = self.n + n_b
        self.mean = self.mean + delta * n_b / total
        self.m2 = self.m2 + m2_b + delta**2 * self.n * n_b / total
        self.n = total
        self.min = np.minimum(self.min, block.min(axis=0))
        self.max = np.maximum(self.max, block.max(axis=0))

    def result(self) -> KeyStats:
        std = np.sqrt(self.m2 / max(self.n, 1))
        return KeyStats(*(v.astype(np.float32) for v in (self.min, self.max, self.mean, std)))


def compute_stats(
    read: Callable[[str, int, int], np.ndarray],
    keys: Sequence[str],
    episodes: Sequence[tuple[int, int, int]],
    *,
    where: str = "store",
) -> NormStats:
    """Stats of each key over the given episodes ``(index, start, stop)``, read with ``read(key, start, stop)``.

    Refuses NaN or inf anywhere in the data, naming the key and the episodes: statistics computed over
    them would be NaN, and a cached NaN normaliser turns every training batch into NaN.
    """
    ranges = [(start, stop) for _, start, stop in episodes]
    out: dict[str, KeyStats] = {}
    total = sum(stop - start for start, stop in ranges)
    if total == 0:
        raise StoreError("cannot compute normalisation statistics of a store with no episodes")
    for key in keys:
        acc: _Accumulator | None = None
        bad_steps: list[np.ndarray] = []
        for start, stop in _merge_ranges(ranges):
            for lo in range(start, stop, BLOCK_STEPS):
                block = np.asarray(read(key, lo, min(stop, lo + BLOCK_STEPS)))
                flat = block.reshape(len(block), -1)
                finite = np.isfinite(flat).all(axis=1)
                if not finite.all():
                    bad_steps.append(lo + np.flatnonzero(~finite))
                    continue
                if acc is None:
                    acc = _Accumulator(flat.shape[1])
                acc.update(flat)
        if bad_steps:
            bad = np.concatenate(bad_steps)
            owners = sorted({index for index, start, stop in episodes if np.any((bad >= start) & (bad < stop))})
            raise StoreCorruptError(
                f"{where}: key '{key}' has NaN or inf at {len(bad)} step(s) in episode(s) "
                f"{', '.join(map(str, owners))}; statistics were not computed or cached; delete those episodes "
                f"(`robot-offrl data delete STORE --episodes {','.join(map(str, owners))}`) or re-record them"
            )
        assert acc is not None
        out[key] = acc.result()
    return NormStats(keys=out, num_steps=total)


def _merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Coalesce touching ranges so contiguous episodes are read in big blocks."""
    merged: list[tuple[int, int]] = []
    for start, stop in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((start, stop))
    return merged
