"""Device, precision and compilation choices, decided once so the loop never branches on hardware."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from robot_offrl.errors import ConfigError


def select_device(name: str = "auto", local_rank: int | None = None) -> torch.device:
    """``auto`` prefers CUDA (the rank's own GPU under torchrun), then Apple MPS, then CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank or 0)
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"unknown device '{name}' (use auto, cpu, cuda, cuda:N or mps)") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device '{name}' asked for but no CUDA GPU is visible; use trainer.device=auto or cpu"
        )
    if device.type == "cuda" and local_rank is not None and device.index is None:
        device = torch.device("cuda", local_rank)
    return device


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on CUDA by default: no loss scaler needed and Hopper/Ampere run it at full speed."""
    if amp == "off":
        return None
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        raise ConfigError("trainer.amp=fp16 is not supported (needs a loss scaler); use bf16 or off")
    raise ConfigError(f"unknown trainer.amp '{amp}' (use auto, bf16 or off)")


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def maybe_compile(module: torch.nn.Module, enabled: bool, backend: str = "inductor") -> torch.nn.Module:
    """Wrap in torch.compile when asked. The compiled wrapper shares parameters with ``module``, so
    checkpoints keep saving the plain module; ``backend="eager"`` exercises the path cheaply on CPU."""
    if not enabled:
        return module
    return torch.compile(module, backend=backend)  # type: ignore[return-value]
