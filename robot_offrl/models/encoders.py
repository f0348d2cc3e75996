"""Observation encoders: one vector per observation window, shared by policy and critic designs.

Cameras go through robomimic's ResNet-18 trunk with every BatchNorm swapped for GroupNorm (the
policy is averaged by EMA and trained with small image batches, both of which break BatchNorm's
running statistics) and robomimic's spatial-softmax keypoint head, which keeps *where* things are
rather than pooling it away. Random crops in training and a centre crop at inference are the only
augmentation. Low-dim keys are already normalised by the sampler and are concatenated as they are.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from robot_offrl.errors import ConfigError, ObservationError
from robot_offrl.extras import require
from robot_offrl.models.obs_info import ObsInfo
from robot_offrl.typed_config import TypedConfig, setting


def _robomimic_nets() -> Any:
    """robomimic's base_nets, imported lazily and without its "no private macro file" banner.

    robomimic is in the ``sim`` extra: low-dim policies, the runtime and the ROS node load without
    it, and only a camera encoder needs it (a missing extra is a one-line error naming it).
    """
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return require("robomimic.models.base_nets", "sim", "camera observations (robomimic's encoder networks)")


def replace_batchnorm_with_groupnorm(module: nn.Module, channels_per_group: int = 16) -> nn.Module:
    """Swap every BatchNorm2d for a GroupNorm of the same width, in place (recursively)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            groups = max(1, child.num_features // channels_per_group)
            setattr(module, name, nn.GroupNorm(groups, child.num_features))
        else:
            replace_batchnorm_with_groupnorm(child, channels_per_group)
    return module


@dataclass(frozen=True)
class EncoderConfig(TypedConfig):
    """The ``encoder`` config group: the one place the encoders' sizes and their defaults are stated."""

    SECTION = "encoder"

    crop: tuple[int, int] | None = setting(None, "any")  # int, [height, width] or null: crop_ratio of each side
    crop_ratio: float = setting(0.9, above=0.0, maximum=1.0)  # 84x84 -> 76x76 crops
    num_keypoints: int = setting(32, minimum=1)  # spatial-softmax keypoints per camera
    feature_dim: int = setting(64, minimum=1)  # per-camera feature size
    lowdim_feature: str = setting("identity", choices=("identity",))  # low-dim keys are concatenated as they are

    def validate(self) -> None:
        raw = self.crop
        crop: tuple[int, int] | None
        if raw is None or raw is False:
            crop = None
        elif isinstance(raw, int) and not isinstance(raw, bool):
            crop = (raw, raw)
        elif not isinstance(raw, str) and hasattr(raw, "__len__") and len(raw) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in raw
        ):
            crop = (int(raw[0]), int(raw[1]))
        else:
            raise ConfigError(f"encoder.crop must be an integer, [height, width] or null, got {raw!r}")
        if crop is not None and min(crop) < 1:
            raise ConfigError(f"encoder.crop must be positive, got {list(crop)}")
        object.__setattr__(self, "crop", crop)

    def crop_for(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """The crop of an image of this size: ``crop`` when set, else ``crop_ratio`` of each side."""
        if self.crop is not None:
            return self.crop
        h, w = image_hw
        return max(1, round(h * self.crop_ratio)), max(1, round(w * self.crop_ratio))



class CropRandomizer(nn.Module):
    """Random crop per image while training, centre crop otherwise; images are (N, C, H, W)."""

    def __init__(self, image_hw: tuple[int, int], crop_hw: tuple[int, int]) -> None:
        super().__init__()
        h, w = image_hw
        ch, cw = crop_hw
        if ch > h or cw > w:
            raise ConfigError(f"encoder.crop {list(crop_hw)} is larger than the image ({h}x{w}); lower encoder.crop")
        self.image_hw = (h, w)
        self.crop_hw = (ch, cw)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        h, w = self.image_hw
        ch, cw = self.crop_hw
        if (ch, cw) == (h, w):
            return images
        n, c = images.shape[:2]
        if not self.training:
            top, left = (h - ch) // 2, (w - cw) // 2
            return images[:, :, top : top + ch, left : left + cw]
        top = torch.randint(0, h - ch + 1, (n,), device=images.device)
        left = torch.randint(0, w - cw + 1, (n,), device=images.device)
        rows = top[:, None] + torch.arange(ch, device=images.device)[None]
        cols = left[:, None] + torch.arange(cw, device=images.device)[None]
        flat_index = (rows[:, :, None] * w + cols[:, None, :]).reshape(n, 1, ch * cw).expand(n, c, ch * cw)
        return images.reshape(n, c, h * w).gather(2, flat_index).reshape(n, c, ch, cw)


class CameraEncoder(nn.Module):
    """uint8 (N, H, W, C) frames -> (N, feature_dim): crop, ResNet-18 (GroupNorm), keypoints, linear."""

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        crop: tuple[int, int],
        num_keypoints: int,
        feature_dim: int,
    ) -> None:
        super().__init__()
        nets = _robomimic_nets()
        h, w, c = image_shape
        self.crop = CropRandomizer((h, w), crop)
        with warnings.catch_warnings():
            # torchvision deprecates robomimic's `pretrained=False` argument; the weights are random either way.
            warnings.simplefilter("ignore", UserWarning)
            trunk = nets.ResNet18Conv(input_channel=c, pretrained=False, input_coord_conv=False)
        self.trunk = replace_batchnorm_with_groupnorm(trunk)
        trunk_shape = self.trunk.output_shape([c, crop[0], crop[1]])
        self.keypoints = nets.SpatialSoftmax(trunk_shape, num_kp=num_keypoints)
        self.project = nn.Linear(num_keypoints * 2, feature_dim)
        self.image_shape = (h, w, c)
        self.output_dim = feature_dim

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 3, 1, 2).float() / 255.0
        x = self.crop(x)
        x = self.keypoints(self.trunk(x))
        return self.project(x.flatten(1))


class ObsEncoder(nn.Module):
    """Observation window dict (B, To, ...) -> (B, To * per_step_dim) feature vector.

    Keys are visited in sorted order so the layout of the vector never depends on dict order.
    """

    def __init__(
        self,
        obs_info: ObsInfo,
        config: EncoderConfig | None = None,
    ) -> None:
        super().__init__()
        self.obs_info = obs_info
        self.lowdim_keys = sorted(obs_info.lowdim)
        self.rgb_keys = sorted(obs_info.rgb)
        config = config if config is not None else EncoderConfig()
        self.cameras = nn.ModuleDict(
            {
                key: CameraEncoder(
                    obs_info.rgb[key], config.crop_for(obs_info.rgb[key][:2]), config.num_keypoints, config.feature_dim
                )
                for key in self.rgb_keys
            }
        )
        step_dim = sum(obs_info.lowdim.values()) + sum(cam.output_dim for cam in self.cameras.values())
        self.step_dim = step_dim
        self.output_dim = step_dim * obs_info.obs_horizon

    def _window(self, obs: Mapping[str, torch.Tensor], key: str, step_shape: tuple[int, ...]) -> torch.Tensor:
        if key not in obs:
            raise ObservationError(
                f"observation key '{key}' is missing from the batch (got {sorted(obs)}); "
                "the policy was built for this key"
            )
        x = obs[key]
        expected = (self.obs_info.obs_horizon, *step_shape)
        if tuple(x.shape[1:]) != expected:
            raise ObservationError(
                f"observation '{key}' has shape {tuple(x.shape)}, expected (B, {', '.join(map(str, expected))})"
            )
        return x

    def forward(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        parts: list[torch.Tensor] = []
        batch = None
        for key in self.lowdim_keys:
            x = self._window(obs, key, (self.obs_info.lowdim[key],))
            batch = x.shape[0]
            parts.append(x.float())
        for key in self.rgb_keys:
            x = self._window(obs, key, self.obs_info.rgb[key])
            b, t = x.shape[:2]
            batch = b
            feats = self.cameras[key](x.reshape(b * t, *x.shape[2:]))
            parts.append(feats.reshape(b, t, -1))
        assert batch is not None  # ObsInfo guarantees at least one key
        return torch.cat(parts, dim=-1).reshape(batch, -1)
