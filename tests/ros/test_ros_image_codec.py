"""Camera messages -> observation arrays: every encoding gives the sim pipeline's tensor."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
import pytest
from ros_rig import test_image

from robot_offrl.errors import ObservationError
from robot_offrl_ros.image_codec import decode_image, decode_raw, fit_image, to_compressed_msg, to_image_msg

JPEG_TOLERANCE = 6.0  # mean absolute error, 0..255, at quality 95


@pytest.fixture(scope="module")
def sim_frame() -> Iterator[np.ndarray]:
    """An agentview observation exactly as the sim pipeline hands it to a policy (84x84, upright RGB)."""
    pytest.importorskip("robosuite")
    os.environ.setdefault("MUJOCO_GL", "egl")
    from robot_offrl_sim.tasks import make_env

    env = make_env("lift", cameras=["agentview"], camera_size=84)
    try:
        yield env.reset(0)["agentview_image"]
    finally:
        env.close()


def camera_path(rgb: np.ndarray, kind: str, shape: tuple[int, int, int]) -> np.ndarray:
    """What the node does with a frame published as ``kind``."""
    msg: Any = to_compressed_msg(rgb, "jpeg", 95) if kind == "jpeg" else to_image_msg(rgb, kind)
    return fit_image(decode_image(msg, "test"), shape)


@pytest.mark.render
@pytest.mark.parametrize("kind", ["rgb8", "bgr8", "jpeg"])
def test_camera_encodings_match_the_sim_observation(sim_frame: np.ndarray, kind: str) -> None:
    np.testing.assert_array_equal(fit_image(sim_frame, sim_frame.shape), sim_frame)  # identity at the schema size
    got = camera_path(sim_frame, kind, sim_frame.shape)
    assert got.shape == sim_frame.shape and got.dtype == np.uint8
    if kind == "jpeg":
        assert np.abs(got.astype(float) - sim_frame).mean() < JPEG_TOLERANCE
    else:
        np.testing.assert_array_equal(got, sim_frame)


@pytest.mark.parametrize("kind", ["rgb8", "bgr8", "jpeg"])
def test_larger_frames_are_centre_cropped_then_resized(kind: str) -> None:
    frame = test_image(96, 128)  # 4:3 camera, square observation
    expected = cv2.resize(frame[:, 16:112], (84, 84), interpolation=cv2.INTER_AREA)
    got = camera_path(frame, kind, (84, 84, 3))
    if kind == "jpeg":
        assert np.abs(got.astype(float) - expected).mean() < JPEG_TOLERANCE
    else:
        np.testing.assert_array_equal(got, expected)


def test_mono_png_and_row_padding() -> None:
    frame = test_image(20, 30)
    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(decode_image(to_image_msg(frame, "mono8")), np.repeat(gray[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(decode_image(to_compressed_msg(frame, "png")), frame)
    padded = np.zeros((20, 30 * 3 + 6), dtype=np.uint8)  # 6 bytes of padding per row
    padded[:, :90] = frame.reshape(20, 90)
    np.testing.assert_array_equal(decode_raw(20, 30, "rgb8", 96, padded.tobytes()), frame)
    assert fit_image(frame, (10, 10, 1)).shape == (10, 10, 1)
    upscaled = fit_image(frame[:8, :8], (16, 16, 3))
    assert upscaled.shape == (16, 16, 3)


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: decode_raw(2, 2, "16UC1", 4, bytes(8), "/cam"), "/cam: image encoding '16UC1'"),
        (lambda: decode_raw(2, 2, "rgb8", 3, bytes(12)), "step must be at least"),
        (lambda: decode_raw(2, 2, "rgb8", 6, bytes(5)), "expected step\\*height=12"),
        (lambda: decode_image(type("M", (), {"format": "tiff", "data": b"x"})(), "/c"), "'tiff' is not supported"),
        (lambda: decode_image(type("M", (), {"format": "jpeg", "data": b"notjpeg"})(), "/c"), "could not decode"),
        (lambda: fit_image(np.zeros((4, 4), np.uint8), (2, 2, 3)), "RGB uint8"),
        (lambda: fit_image(np.zeros((4, 4, 3), np.uint8), (2, 2, 4)), "shape must be"),
        (lambda: to_image_msg(np.zeros((2, 2, 3), np.uint8), "yuv422"), "not supported"),
        (lambda: to_compressed_msg(np.zeros((2, 2, 3), np.uint8), "gif"), "not supported"),
    ],
)
def test_bad_images_name_the_problem(call: Any, needle: str) -> None:
    with pytest.raises(ObservationError, match=needle):
        call()
