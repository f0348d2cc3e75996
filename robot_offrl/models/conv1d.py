"""A Conv1d that computes short sequences on the CPU as matmuls over the unfolded input where that
was measured faster than oneDNN's convolution kernels.

All paths are for stride 1 with 'same' zero padding on sequences of at most ``UNFOLD_MAX_LENGTH`` steps
(the U-Net's deeper levels: 1024 channels x 4 steps at the issue's shapes):

- training, the weight gradient: oneDNN's weight-gradient kernel is slow for many channels over few
  time steps: forward and backward of one such layer took 519 ms in bf16 at batch 256 with it and
  138 ms with one einsum over the unfolded input (``bench/bench_learn.py --conv-grad-only``;
  docs/benchmarks.md). The forward pass and the input gradient stay oneDNN's,
- except in fp32 training over at most ``GEMM_TRAIN_MAX_LENGTH`` steps, where all three are GEMMs
  (``_GemmConv1d``): oneDNN's fp32 forward and input gradient are slow there too on a CPU without
  native bf16, where training runs in fp32 (0.31-0.40x per layer at batch 256, same bench).
- acting in fp32, the forward pass: at batch 1 oneDNN's fp32 convolution runs these layers at a few
  GFLOP/s; one GEMM of the unfolded input (B*T rows) against the flattened weight is about 3x faster
  per layer on an AVX2 CPU without native bf16, where acting runs in fp32
  (``bench/bench_runtime.py --conv1d native,auto``). Under bf16 autocast it stays oneDNN's, which was
  measured fast.

Results agree with nn.Conv1d up to float summation order, and the state dict is nn.Conv1d's, so
checkpoints do not know which path trained or runs them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robot_offrl.errors import ConfigError

# Input lengths up to which the unfolded weight gradient is used. Measured on a 2-core AVX-512 BF16 CPU,
# bf16, batch 256, kernels 1 and 5: every length <= 8 gained (0.14-0.83x of oneDNN's time), every
# length-16 shape lost (1.03-1.65x).
UNFOLD_MAX_LENGTH = 8
# In fp32 training, sequences up to this length also take the GEMM forward and input gradient
# (_GemmConv1d). Measured per layer on an AVX2 CPU without native bf16, fp32, batch 256 and 32: at 4 steps
# 0.26-0.40x of oneDNN's input gradient and 0.52-0.81x of its forward; at 8 steps mixed (0.79-2.06x).
GEMM_TRAIN_MAX_LENGTH = 4
# auto: the unfolded path where measured faster; native: always nn.Conv1d's. trainer.conv_weight_grad
# chooses for the training weight gradient, the runtime's conv1d option for the acting forward pass.
CONV1D_MODES = ("auto", "native")


def _columns(x: torch.Tensor, kernel: int, padding: int) -> torch.Tensor:
    """(B, C, T) -> (B*T, C*kernel): each output step's zero-padded receptive field as one row."""
    b, c, t = x.shape
    return F.pad(x, (padding, padding)).unfold(2, kernel, 1).transpose(1, 2).reshape(b * t, c * kernel)


def _fold_columns(columns: torch.Tensor, batch: int, length: int, kernel: int, padding: int) -> torch.Tensor:
    """The adjoint of ``_columns``: (B*T, C*kernel) rows summed back onto the (B, C, T) steps they read."""
    rows = columns.view(batch, length, -1).transpose(1, 2)  # (B, C*kernel, T): F.fold's layout
    summed = F.fold(rows, output_size=(1, length + 2 * padding), kernel_size=(1, kernel))
    return summed[:, :, 0, padding:padding + length]


def _times_weight(
    columns: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, batch: int, length: int
) -> torch.Tensor:
    """(B*T, C_in*k) columns @ the flattened (C_in*k, C_out) weight (+ bias) -> (B, C_out, T)."""
    flat = weight.reshape(weight.shape[0], -1).t()
    out = columns @ flat if bias is None else torch.addmm(bias, columns, flat)
    return out.view(batch, length, -1).transpose(1, 2)


def gemm_conv1d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int) -> torch.Tensor:
    """conv1d (stride 1, 'same' zero padding) as one GEMM over the unfolded input.

    Every output step is a row, so at batch 1 the GEMM still has T rows and reads the weight once.
    """
    b, _, t = x.shape
    return _times_weight(_columns(x, weight.shape[-1], padding), weight, bias, b, t)


class _GemmConv1d(torch.autograd.Function):
    """conv1d (stride 1, 'same' zero padding) whose forward and both gradients are GEMMs over the columns."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int) -> torch.Tensor:
        b, _, t = x.shape
        columns = _columns(x, weight.shape[-1], padding)
        ctx.save_for_backward(columns, weight)
        ctx.shape = (b, t, padding)
        ctx.has_bias = bias is not None
        return _times_weight(columns, weight, bias, b, t)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        columns, weight = ctx.saved_tensors
        b, t, pad = ctx.shape
        rows = grad.transpose(1, 2).reshape(b * t, -1)  # (B*T, C_out)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = _fold_columns(rows @ weight.reshape(weight.shape[0], -1), b, t, weight.shape[-1], pad)
        if ctx.needs_input_grad[1]:
            grad_w = (rows.t() @ columns).view_as(weight)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = rows.sum(0)
        return grad_x, grad_w, grad_b, None


class _UnfoldedWeightGrad(torch.autograd.Function):
    """conv1d (stride 1, 'same' zero padding) with the weight gradient as einsum over unfolded input."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        ctx.has_bias = bias is not None
        return F.conv1d(x, weight, bias, padding=padding)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        pad = ctx.padding
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = F.conv_transpose1d(grad, weight, padding=pad)
        if ctx.needs_input_grad[1]:
            columns = F.pad(x, (pad, pad)).unfold(2, weight.shape[-1], 1)  # (B, C_in, T, kernel)
            grad_w = torch.einsum("bot,bctk->ock", grad, columns)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2))
        return grad_x, grad_w, grad_b, None


class Conv1d(nn.Conv1d):
    """nn.Conv1d that takes the unfolded paths where they were measured faster (module docstring).

    ``unfold_weight_grad`` (trainer.conv_weight_grad, ``set_conv_weight_grad``) and ``gemm_inference``
    (the runtime's conv1d option, ``set_conv_inference``) turn each off.
    """

    unfold_weight_grad: bool = True
    gemm_inference: bool = True

    def _short_same(self, x: torch.Tensor) -> bool:
        """A CPU input of at most UNFOLD_MAX_LENGTH steps, for this layer's stride-1 'same' padding."""
        return (
            x.device.type == "cpu"
            and x.dim() == 3
            and x.shape[-1] <= UNFOLD_MAX_LENGTH
            and self.stride == (1,) and self.dilation == (1,) and self.groups == 1
            and self.padding_mode == "zeros"
            and isinstance(self.padding, tuple) and 2 * self.padding[0] == self.kernel_size[0] - 1
        )

    def _unfolds(self, x: torch.Tensor) -> bool:
        return self.unfold_weight_grad and torch.is_grad_enabled() and self.weight.requires_grad and self._short_same(x)

    def _gemm_forward(self, x: torch.Tensor) -> bool:
        return (
            self.gemm_inference
            and not torch.is_grad_enabled()
            and x.dtype == torch.float32 and self.weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu")
            and self._short_same(x)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._gemm_forward(x):
            return gemm_conv1d(x, self.weight, self.bias, self.padding[0])
        if not self._unfolds(x):
            return super().forward(x)
        # Do autocast's cast here (the autograd Function runs with autocast off) so the result has
        # the dtype nn.Conv1d would give and the casts stay on the autograd graph.
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        bias = None if self.bias is None else self.bias.to(dtype)
        # fp32 over at most GEMM_TRAIN_MAX_LENGTH steps: everything as GEMMs (oneDNN's fp32 forward and
        # input gradient are slow there too); otherwise only the weight gradient.
        gemm = dtype == torch.float32 and x.shape[-1] <= GEMM_TRAIN_MAX_LENGTH
        with torch.autocast("cpu", enabled=False):
            function = _GemmConv1d if gemm else _UnfoldedWeightGrad
            return function.apply(x.to(dtype), self.weight.to(dtype), bias, self.padding[0])


def _set_mode(module: nn.Module, attribute: str, mode: str, setting: str) -> None:
    if mode not in CONV1D_MODES:
        raise ConfigError(f"{setting} must be one of {CONV1D_MODES}, got {mode!r}")
    for layer in module.modules():
        if isinstance(layer, Conv1d):
            setattr(layer, attribute, mode == "auto")


def set_conv_weight_grad(module: nn.Module, mode: str) -> None:
    """Apply trainer.conv_weight_grad: ``auto`` unfolds where measured faster, ``native`` never does."""
    _set_mode(module, "unfold_weight_grad", mode, "trainer.conv_weight_grad")


def set_conv_inference(module: nn.Module, mode: str) -> None:
    """Apply the runtime's conv1d option: ``auto`` takes the fp32 GEMM forward where measured faster."""
    _set_mode(module, "gemm_inference", mode, "conv1d")
