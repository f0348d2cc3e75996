"""Export one episode's camera frames as an MP4, to look at what a demonstration actually shows."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from robot_offrl.data.errors import StoreError
from robot_offrl.data.store import EpisodeStore


def _to_rgb_uint8(frames: np.ndarray, kind: str) -> np.ndarray:
    """Depth maps become grey images scaled to the episode's range; RGB passes through."""
    if kind == "rgb":
        return frames
    depth = frames.astype(np.float32).reshape(frames.shape[0], frames.shape[1], frames.shape[2])
    lo, hi = float(np.nanmin(depth)), float(np.nanmax(depth))
    grey = np.zeros_like(depth) if hi <= lo else (depth - lo) / (hi - lo)
    grey = (np.nan_to_num(grey) * 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def _pad_even(frames: np.ndarray) -> np.ndarray:
    """H.264 with yuv420p needs even sizes; pad one black row/column instead of rescaling."""
    pad_h = frames.shape[1] % 2
    pad_w = frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
    return frames


def export_video(
    store: EpisodeStore, episode: int, camera: str, out: str | os.PathLike[str], fps: float | None = None
) -> Path:
    """Write ``camera``'s frames of ``episode`` to ``out`` (MP4, H.264) at the control rate by default."""
    spec = store.schema.key(camera) if camera in store.schema.obs_keys else None
    if spec is None or not spec.is_image:
        cameras = store.schema.image_keys()
        raise StoreError(
            f"{store.url}: '{camera}' is not an image key of this store (image keys: {', '.join(cameras) or 'none'})"
        )
    out_path = Path(out)
    if out_path.suffix.lower() != ".mp4":
        raise StoreError(f"output {out_path} must end in .mp4")
    if not out_path.parent.exists():
        raise StoreError(f"output folder {out_path.parent} does not exist; create it first")
    meta = store.episode(episode)
    frames = store.read_steps(camera, meta.start, meta.end)
    frames = _pad_even(_to_rgb_uint8(frames, spec.kind))
    import imageio.v2 as imageio

    rate = float(fps) if fps is not None else store.schema.control_rate_hz
    with imageio.get_writer(
        out_path, fps=rate, codec="libx264", macro_block_size=1, pixelformat="yuv420p", quality=8
    ) as writer:
        for frame in frames:
            writer.append_data(frame)
    return out_path
