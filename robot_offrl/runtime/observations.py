"""Checks and normalises one time step of observations exactly as the training windows were built.

Kept apart from the runtime so the checks (the place where a real robot's data first meets the
model) are easy to read and to test: every problem names the key and says what was expected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from robot_offrl.data import KeySpec, NormStats
from robot_offrl.errors import ObservationError


def check_step(obs: Mapping[str, Any], specs: list[KeySpec]) -> dict[str, np.ndarray]:
    """The schema's keys from ``obs`` as arrays of the schema's shape; extra keys are ignored."""
    if not isinstance(obs, Mapping):
        raise ObservationError(f"an observation must be a mapping of key -> array, got {type(obs).__name__}")
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        if spec.name not in obs:
            raise ObservationError(
                f"observation is missing key '{spec.name}' (expected {spec.kind} {spec.dtype}{list(spec.shape)}; "
                f"got keys {sorted(obs)})"
            )
        value = np.asarray(obs[spec.name])
        if tuple(value.shape) != tuple(spec.shape):
            raise ObservationError(
                f"observation '{spec.name}' has shape {tuple(value.shape)}, expected {tuple(spec.shape)}"
            )
        if spec.kind == "rgb":
            if value.dtype != np.uint8:
                raise ObservationError(f"image observation '{spec.name}' must be uint8, got {value.dtype}")
        else:
            if not np.issubdtype(value.dtype, np.number):
                raise ObservationError(f"observation '{spec.name}' must be numeric, got {value.dtype}")
            value = value.astype(np.float32, copy=False)
            if not np.isfinite(value).all():
                raise ObservationError(f"observation '{spec.name}' contains NaN or inf: {value.tolist()}")
        out[spec.name] = value
    return out


def normalize_step(step: dict[str, np.ndarray], specs: list[KeySpec], stats: NormStats) -> dict[str, np.ndarray]:
    """Low-dim keys to [-1, 1] with the checkpoint's statistics; images stay uint8 for the encoder."""
    return {
        spec.name: (step[spec.name] if spec.kind == "rgb" else stats.normalize(spec.name, step[spec.name]).astype(np.float32))
        for spec in specs
    }
