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


def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX: oneDNN then runs bf16 matmuls and convolutions natively. Without either, bf16
    is emulated and slower than fp32, so autocast would cost time instead of saving it."""
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private torch helpers: absent -> False
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` (trainer.amp and acting's amp; acting adds a work threshold on top,
    ``runtime.policy.acting_autocast_dtype``). ``auto`` is bf16 on CUDA (no loss scaler needed; Ampere and later run it at
    full speed) and on CPUs with native bf16, where training steps measured 0.48-0.84x of fp32 at the
    project's shapes with equal sweep success (docs/benchmarks.md); fp32 elsewhere."""
    if amp == "off":
        return None
    if amp == "auto":
        native = device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())
        return torch.bfloat16 if native else None
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


# Layers whose weights CPU and CUDA autocast run in the lower precision (torch's autocast op lists:
# linear, conv*, conv_transpose*). Norm layers are left alone: autocast keeps those in fp32.
_AUTOCAST_MATMUL_LAYERS = (torch.nn.Linear, torch.nn.modules.conv._ConvNd)


def cast_for_autocast_inference(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Store the matmul layers' weights and biases in ``dtype`` once, for a module that will only act.

    Autocast casts every fp32 weight to bf16 on every call, and its per-context cache skips weights
    that do not require grad (an acting copy's). At batch 1 those casts dominate: a 63.5 M-parameter
    U-Net reads 254 MB and writes 127 MB per denoising step just to cast (docs/benchmarks.md: with the
    cast done once, a DDIM-10 chunk took 0.36x of fp32 against 0.50x for plain autocast, compare_lerobot.py). Autocast
    rounds exactly as ``Tensor.to`` does, so the actions are the same bit for bit; only training
    would suffer (bf16 master weights), hence in place and for acting only.
    """
    for layer in module.modules():
        if isinstance(layer, _AUTOCAST_MATMUL_LAYERS):
            layer.to(dtype)
    return module


def maybe_compile(module: torch.nn.Module, enabled: bool, backend: str = "inductor") -> torch.nn.Module:
    """Wrap in torch.compile when asked. The compiled wrapper shares parameters with ``module``, so
    checkpoints keep saving the plain module; ``backend="eager"`` exercises the path cheaply on CPU."""
    if not enabled:
        return module
    return torch.compile(module, backend=backend)  # type: ignore[return-value]
