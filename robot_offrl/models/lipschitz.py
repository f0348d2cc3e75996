"""The RISE Lipschitz head: a linear map whose largest singular value is penalised.

Everything the denoiser knows about the observation passes through this one matrix, so bounding
its spectral norm bounds how fast the action distribution can change with the observation
features. That smoothness is what lets the behaviour policy's support widen off the expert states
(RISE.md, "The two modifications"). With a zero weight the head is just a linear layer, so BC,
IDQL and RISE keep identical networks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robot_offrl.errors import ConfigError

METHODS = ("exact", "power")


class LipschitzHead(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, method: str = "exact", power_iterations: int = 1) -> None:
        super().__init__()
        if method not in METHODS:
            raise ConfigError(f"algo.lipschitz_method must be one of {', '.join(METHODS)}, got {method!r}")
        self.linear = nn.Linear(in_dim, out_dim)
        self.method = method
        self.power_iterations = power_iterations
        # Persistent left singular vector estimate: one iteration per step suffices because W moves slowly.
        self.register_buffer("u", F.normalize(torch.randn(out_dim), dim=0))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)

    def spectral_norm(self) -> torch.Tensor:
        """Largest singular value of the weight, differentiable with respect to it."""
        weight = self.linear.weight.float()
        if self.method == "exact":
            return torch.linalg.matrix_norm(weight, ord=2)
        with torch.no_grad():
            u = self.u.float()
            for _ in range(self.power_iterations):
                v = F.normalize(weight.t() @ u, dim=0)
                u = F.normalize(weight @ v, dim=0)
            if self.training:
                self.u.copy_(u)
        return u @ weight @ v

    def penalty(self, weight: float) -> torch.Tensor:
        return weight * self.spectral_norm()
