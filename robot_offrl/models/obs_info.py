"""What the networks need to know about the observations, independent of where they came from.

The encoders are built from this small description rather than from the store schema so that the
trainer (reading a store) and the runtime (reading a checkpoint's schema.json) construct exactly the
same networks from the same few numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from robot_offrl.errors import ConfigError


@dataclass(frozen=True)
class ObsInfo:
    lowdim: dict[str, int] = field(default_factory=dict)  # key -> feature size D of a (D,) step
    rgb: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # key -> (H, W, C), uint8
    obs_horizon: int = 2
    pred_horizon: int = 16

    def __post_init__(self) -> None:
        if not self.lowdim and not self.rgb:
            raise ConfigError("the policy needs at least one observation key (low-dim or rgb); none given")
        for name, value in (("obs_horizon", self.obs_horizon), ("pred_horizon", self.pred_horizon)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"policy.{name} must be a positive integer, got {value!r}")
        for key, dim in self.lowdim.items():
            if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
                raise ConfigError(f"low-dim observation '{key}' must have a positive size, got {dim!r}")
        for key, shape in self.rgb.items():
            if len(shape) != 3 or min(shape) < 1:
                raise ConfigError(f"image observation '{key}' must have shape (H, W, C), got {shape!r}")
        overlap = set(self.lowdim) & set(self.rgb)
        if overlap:
            raise ConfigError(f"observation keys {sorted(overlap)} are listed as both low-dim and rgb")

    @property
    def keys(self) -> list[str]:
        return sorted(self.lowdim) + sorted(self.rgb)

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form, so a checkpoint can rebuild the same networks."""
        return {
            "lowdim": dict(self.lowdim),
            "rgb": {k: list(v) for k, v in self.rgb.items()},
            "obs_horizon": self.obs_horizon,
            "pred_horizon": self.pred_horizon,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ObsInfo:
        try:
            return cls(
                lowdim={str(k): int(v) for k, v in dict(data.get("lowdim", {})).items()},  # type: ignore[arg-type]
                rgb={str(k): tuple(int(x) for x in v) for k, v in dict(data.get("rgb", {})).items()},  # type: ignore[arg-type]
                obs_horizon=int(data["obs_horizon"]),  # type: ignore[arg-type]
                pred_horizon=int(data["pred_horizon"]),  # type: ignore[arg-type]
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"malformed observation info {data!r}: {err}") from err
