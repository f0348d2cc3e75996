"""Twin Q and V networks on the critic's own observation encoder.

The critic does not share the policy's encoder: TD targets are noisy and large (up to
1 / (1 - gamma)) and would drag the policy's features around. Q1/Q2 and the encoder they read
form one module (``TwinQ``) so the Polyak target is a single deep copy of it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from robot_offrl.models.encoders import ObsEncoder


def mlp(in_dim: int, hidden_dim: int, num_layers: int, out_dim: int) -> nn.Sequential:
    """num_layers hidden layers of Linear -> LayerNorm -> Mish; LayerNorm keeps TD learning stable."""
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(num_layers):
        layers += [nn.Linear(width, hidden_dim), nn.LayerNorm(hidden_dim), nn.Mish()]
        width = hidden_dim
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class PrecomputedFeatures(nn.Module):
    """Stands in for an encoder when the critic is handed feature vectors instead of observations."""

    def __init__(self, output_dim: int) -> None:
        super().__init__()
        self.output_dim = output_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


class TwinQ(nn.Module):
    """(observation window, scored actions of the chunk, flattened) -> (Q1, Q2), each (B,)."""

    def __init__(
        self, encoder: ObsEncoder | PrecomputedFeatures, action_dim: int, hidden_dim: int, num_layers: int
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.q1 = mlp(encoder.output_dim + action_dim, hidden_dim, num_layers, 1)
        self.q2 = mlp(encoder.output_dim + action_dim, hidden_dim, num_layers, 1)

    def features(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.encoder(obs)

    def from_features(self, features: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([features, action.to(features.dtype)], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)

    def forward(self, obs: Mapping[str, torch.Tensor], action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.from_features(self.features(obs), action)


class Critic(nn.Module):
    """TwinQ plus the state value V, which reads the same critic encoder."""

    def __init__(
        self, encoder: ObsEncoder | PrecomputedFeatures, action_dim: int, hidden_dim: int, num_layers: int
    ) -> None:
        super().__init__()
        self.twin = TwinQ(encoder, action_dim, hidden_dim, num_layers)
        self.v = mlp(encoder.output_dim, hidden_dim, num_layers, 1)

    def value(self, features: torch.Tensor) -> torch.Tensor:
        return self.v(features).squeeze(-1)

    def min_q(
        self, obs: Mapping[str, torch.Tensor], actions: torch.Tensor, features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """min(Q1, Q2) for K scored actions per observation: (B, K, D) -> (B, K), encoding obs once.

        ``features`` (the critic encoder's output for ``obs``) skips the encoder when the caller
        scores the same observations more than once, as early pruning does.
        """
        b, k = actions.shape[:2]
        feats = self.twin.features(obs) if features is None else features
        feats = feats[:, None].expand(b, k, feats.shape[-1]).reshape(b * k, -1)
        q1, q2 = self.twin.from_features(feats, actions.reshape(b * k, -1))
        return torch.minimum(q1, q2).reshape(b, k)
