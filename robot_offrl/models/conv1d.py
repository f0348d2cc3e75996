"""A Conv1d whose CPU weight gradient, on short sequences, is one matmul over the unfolded input.

oneDNN's conv1d weight-gradient kernel is slow for many channels over few time steps, which is
exactly the U-Net's deepest levels (1024 channels x 4 steps at the issue's shapes): forward and backward
of one such layer took 519 ms in bf16 at batch 256 with oneDNN's weight gradient and 138 ms with this
one (``bench/bench_learn.py --conv-grad-only``; docs/benchmarks.md). The forward pass and the input gradient stay oneDNN's
(they are fast); only the weight gradient is computed differently, so results agree up to float
summation order. The state dict is nn.Conv1d's, so checkpoints do not know which path trained them.
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
WEIGHT_GRAD_MODES = ("auto", "native")  # trainer.conv_weight_grad


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
    """nn.Conv1d that takes the unfolded weight gradient where it was measured faster.

    ``unfold_weight_grad`` (set from trainer.conv_weight_grad by ``set_conv_weight_grad``) turns it off.
    """

    unfold_weight_grad: bool = True

    def _unfolds(self, x: torch.Tensor) -> bool:
        return (
            self.unfold_weight_grad
            and x.device.type == "cpu"
            and torch.is_grad_enabled()
            and self.weight.requires_grad
            and x.dim() == 3
            and x.shape[-1] <= UNFOLD_MAX_LENGTH
            and self.stride == (1,) and self.dilation == (1,) and self.groups == 1
            and self.padding_mode == "zeros"
            and isinstance(self.padding, tuple) and 2 * self.padding[0] == self.kernel_size[0] - 1
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._unfolds(x):
            return super().forward(x)
        # Do autocast's cast here (the autograd Function runs with autocast off) so the result has
        # the dtype nn.Conv1d would give and the casts stay on the autograd graph.
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        bias = None if self.bias is None else self.bias.to(dtype)
        with torch.autocast("cpu", enabled=False):
            return _UnfoldedWeightGrad.apply(x.to(dtype), self.weight.to(dtype), bias, self.padding[0])


def set_conv_weight_grad(module: nn.Module, mode: str) -> None:
    """Apply trainer.conv_weight_grad: ``auto`` unfolds where measured faster, ``native`` never does."""
    if mode not in WEIGHT_GRAD_MODES:
        raise ConfigError(f"trainer.conv_weight_grad must be one of {WEIGHT_GRAD_MODES}, got {mode!r}")
    for layer in module.modules():
        if isinstance(layer, Conv1d):
            layer.unfold_weight_grad = mode == "auto"
