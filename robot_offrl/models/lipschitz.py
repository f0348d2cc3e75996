"""The RISE Lipschitz term: what sits between the policy's observation encoder and its denoiser.

Everything the denoiser knows about the observation passes through this module, so penalising
the spectral norm of one of its weight matrices limits how fast the action distribution can
change with the observation features. That smoothness is what lets the behaviour policy's
support widen off the expert states (RISE.md, "The two modifications"). Two forms
(``algo.lipschitz_form``):

- ``spectral_mlp`` (the reference's, robomimic fork ``make_spectral_net``): an extra
  in -> H -> H -> in ReLU MLP after the encoder, penalised by ``weight * sigma_max`` of its last
  layer. ReLU is 1-Lipschitz, so with the earlier layers fixed the penalty scales the whole
  head's bound.
- ``hinge`` (this project's first form, kept so its checkpoints load and act the same): one
  ``Linear(in -> cond_dim)``, penalised only by the part of its sigma above ``bound``.

With a zero weight either form is just a plain network, so BC, IDQL and RISE of one form keep
identical networks and differ only by the penalty.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from robot_offrl.errors import ConfigError

METHODS = ("exact", "power")
FORMS = ("spectral_mlp", "hinge")


class _SpectralNorm(nn.Module):
    """sigma_max of one Linear's weight, exactly or by power iteration with a persistent vector."""

    def __init__(self, out_dim: int, method: str, power_iterations: int) -> None:
        super().__init__()
        if method not in METHODS:
            raise ConfigError(f"algo.lipschitz_method must be one of {', '.join(METHODS)}, got {method!r}")
        self.method = method
        self.power_iterations = power_iterations
        # Persistent left singular vector estimate: one iteration per step suffices because W moves slowly.
        self.register_buffer("u", F.normalize(torch.randn(out_dim), dim=0))

    def sigma(self, linear: nn.Linear) -> torch.Tensor:
        """Largest singular value of ``linear.weight``, differentiable with respect to it."""
        weight = linear.weight.float()
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


class LipschitzHead(_SpectralNorm):
    """The ``hinge`` form: one linear map; the penalty acts on its sigma above ``bound``.

    Parameter and buffer names (``linear.*``, ``u``) are those of the first checkpoints.
    """

    def __init__(
        self, in_dim: int, out_dim: int, method: str = "exact", power_iterations: int = 1, bound: float = 0.0
    ) -> None:
        super().__init__(out_dim, method, power_iterations)
        self.linear = nn.Linear(in_dim, out_dim)
        self.bound = bound
        self.output_dim = out_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)

    def spectral_norm(self) -> torch.Tensor:
        return self.sigma(self.linear)

    def penalty(self, weight: float, sigma: torch.Tensor | None = None) -> torch.Tensor:
        """The term added to the actor loss; pass ``sigma`` when already computed (one power step per step)."""
        sigma = self.spectral_norm() if sigma is None else sigma
        # A hinge, not weight * sigma: sigma of a single linear map has no minimum (the next layer can
        # absorb any scale), and minimising it drove sigma to ~1e-4 on Lift. bound = 0 is the plain term.
        return weight * torch.relu(sigma - self.bound)


class SpectralMLPHead(_SpectralNorm):
    """The ``spectral_mlp`` form: in -> hidden -> hidden -> in ReLU MLP, weight * sigma_max(last layer)."""

    def __init__(self, in_dim: int, hidden_dim: int = 512, method: str = "exact", power_iterations: int = 1) -> None:
        super().__init__(in_dim, method, power_iterations)
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, in_dim),
        )
        self.output_dim = in_dim

    @property
    def last(self) -> nn.Linear:
        last = self.net[-1]
        assert isinstance(last, nn.Linear)
        return last

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)

    def spectral_norm(self) -> torch.Tensor:
        return self.sigma(self.last)

    def penalty(self, weight: float, sigma: torch.Tensor | None = None) -> torch.Tensor:
        """The reference's beta * sigma_max(last layer); pass ``sigma`` when already computed."""
        return weight * (self.spectral_norm() if sigma is None else sigma)


def make_lipschitz_head(
    form: str, in_dim: int, cond_dim: int, hidden_dim: int, method: str, bound: float
) -> LipschitzHead | SpectralMLPHead:
    """The head for ``algo.lipschitz_form``; its ``output_dim`` is the denoiser's condition width."""
    if form == "hinge":
        return LipschitzHead(in_dim, cond_dim, method, bound=bound)
    if form == "spectral_mlp":
        return SpectralMLPHead(in_dim, hidden_dim, method)
    raise ConfigError(f"algo.lipschitz_form must be one of {', '.join(FORMS)}, got {form!r}")
