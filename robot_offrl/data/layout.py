"""Array layout: names, chunk shapes and codecs of the store's arrays.

Chunking is chosen for training reads, which fetch windows of a few steps at random places:
- images: ``IMAGE_CHUNK_BYTES`` worth of frames per chunk (at most ``MAX_IMAGE_CHUNK_FRAMES``),
  3 frames for 84x84 RGB. A 2-frame observation window touches one or two chunks, so a read
  decompresses about 2x the frames it uses, and the store needs ~1 file per 3 frames, not 1 per frame.
  Blosc/Zstd level 3 without shuffle (uint8 gains nothing from byte shuffling).
- low-dim observations and actions: ``LOWDIM_CHUNK_STEPS`` = 128 steps per chunk (6.4 s at 20 Hz). A
  16-action window touches one or two chunks (128-256 steps decoded for 16 used; 3.5 KiB per chunk
  for 7 floats), which measured ~4x cheaper per read than 1024-step chunks, while a 1M-step store
  still needs only ~8k files per key. Blosc/Zstd level 5 with byte shuffle.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robot_offrl.data.schema import KeySpec

OBS_GROUP = "obs"
ACTIONS_ARRAY = "actions"
INDEX_GROUP = "index"
IMAGE_CHUNK_BYTES = 64 * 1024
MAX_IMAGE_CHUNK_FRAMES = 4
LOWDIM_CHUNK_STEPS = 128


def obs_path(key: str) -> str:
    return f"{OBS_GROUP}/{key}"


def chunk_steps(spec: KeySpec | None) -> int:
    """Steps per chunk along time for an observation key (None: the actions array)."""
    if spec is None or not spec.is_image:
        return LOWDIM_CHUNK_STEPS
    frame_bytes = int(np.prod(spec.shape)) * np.dtype(spec.dtype).itemsize
    return int(max(1, min(MAX_IMAGE_CHUNK_FRAMES, IMAGE_CHUNK_BYTES // frame_bytes)))


def codec(spec: KeySpec | None) -> Any:
    from zarr.codecs import BloscCodec

    if spec is not None and spec.is_image:
        return BloscCodec(cname="zstd", clevel=3, shuffle="noshuffle")
    return BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")


def create_arrays(root: Any, obs: list[KeySpec], action_dim: int) -> None:
    """Empty (0-step) arrays for every key, in an open zarr group."""
    obs_group = root.require_group(OBS_GROUP)
    for spec in obs:
        obs_group.create_array(
            spec.name,
            shape=(0, *spec.shape),
            chunks=(chunk_steps(spec), *spec.shape),
            dtype=spec.dtype,
            compressors=codec(spec),
            fill_value=0,
        )
    root.create_array(
        ACTIONS_ARRAY,
        shape=(0, action_dim),
        chunks=(LOWDIM_CHUNK_STEPS, action_dim),
        dtype="float32",
        compressors=codec(None),
        fill_value=0,
    )


def chunk_keys(array: Any, prefix: str, start: int, stop: int) -> list[str]:
    """Store keys of the chunks covering steps [start, stop) of a time-major array, plus its metadata."""
    if stop <= start:
        return [f"{prefix}/zarr.json"]
    step = array.chunks[0]
    zeros = (0,) * (array.ndim - 1)
    keys = [
        f"{prefix}/{array.metadata.encode_chunk_key((i, *zeros))}"
        for i in range(start // step, (stop - 1) // step + 1)
    ]
    return [*keys, f"{prefix}/zarr.json"]
