"""How the critic picks one of K candidate action chunks (``algo.selection.mode``).

The modes are listed here, beside the code that implements them, so the config check, the runtime's
acting options and the command line all refuse the same names.
"""

from __future__ import annotations

import torch

from robot_offrl.errors import ConfigError

SELECTION_MODES = ("argmax", "softmax")


def check_selection(mode: str, temperature: float) -> None:
    """Refuse a bad mode or temperature before any chunk is sampled."""
    if mode not in SELECTION_MODES:
        raise ConfigError(f"selection must be one of {', '.join(repr(m) for m in SELECTION_MODES)}, got {mode!r}")
    if temperature <= 0:
        raise ConfigError(f"selection temperature must be > 0, got {temperature}")


def pick(q: torch.Tensor, mode: str, temperature: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B,) index of the chosen candidate per row of ``q`` (B, K).

    ``argmax`` takes the best; ``softmax`` samples with probability proportional to exp(Q / temperature).
    """
    check_selection(mode, temperature)
    if mode == "argmax":
        return q.argmax(dim=1)
    probs = torch.softmax(q / temperature, dim=1)
    if generator is not None and generator.device != probs.device:
        return torch.multinomial(probs.cpu(), 1, generator=generator).squeeze(1).to(probs.device)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)
