"""The camera node plays a real video file through OpenCV VideoCapture onto ROS topics."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from ros_rig import test_image
from sensor_msgs.msg import CompressedImage, Image

from robot_offrl.errors import ConfigError
from robot_offrl_ros.camera_node import CameraNode
from robot_offrl_ros.image_codec import decode_image

pytestmark = pytest.mark.ros


def write_clip(path: Path, frames: int = 6) -> np.ndarray:
    frame = test_image(48, 64)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    assert writer.isOpened(), "OpenCV cannot write MJPG here"
    for _ in range(frames):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return frame


def overrides(**values: Any) -> list[Parameter]:
    return [Parameter(k, value=v) for k, v in values.items()]


def test_camera_node_publishes_raw_and_jpeg_frames_from_a_video(ros_context: Any, tmp_path: Path) -> None:
    frame = write_clip(tmp_path / "clip.avi")
    node = CameraNode(context=ros_context, parameter_overrides=overrides(
        device=str(tmp_path / "clip.avi"), topic="/cam/image_raw", fps=30.0, loop=True, jpeg_quality=90,
        encoding="bgr8"))
    helper = rclpy.create_node("camera_listener", context=ros_context)
    got: dict[str, list[Any]] = {"raw": [], "jpeg": []}
    helper.create_subscription(Image, "/cam/image_raw", got["raw"].append, qos_profile_sensor_data)
    helper.create_subscription(CompressedImage, "/cam/image_raw/compressed", got["jpeg"].append,
                               qos_profile_sensor_data)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(helper)
    try:
        deadline = time.monotonic() + 8.0
        while time.monotonic() < deadline and (len(got["raw"]) < 10 or not got["jpeg"]):
            executor.spin_once(timeout_sec=0.05)
        assert len(got["raw"]) >= 10, "looping a 6-frame clip must keep publishing"
        msg = got["raw"][-1]
        assert (msg.encoding, msg.height, msg.width, msg.header.frame_id) == ("bgr8", 48, 64, "camera")
        assert msg.header.stamp.sec > 0
        for m in (msg, got["jpeg"][-1]):
            assert np.abs(decode_image(m).astype(float) - frame).mean() < 8.0  # MJPG + JPEG are lossy
    finally:
        executor.shutdown()
        node.destroy_node()
        helper.destroy_node()


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"device": "/nonexistent/video9.avi"}, "could not be opened"),
        ({"encoding": "yuv"}, "rgb8 or bgr8"),
        ({"fps": 0.0}, "fps must be > 0"),
        ({"jpeg_quality": 101}, "jpeg_quality"),
    ],
)
def test_camera_node_bad_parameters(ros_context: Any, tmp_path: Path, params: dict, needle: str) -> None:
    write_clip(tmp_path / "clip.avi", 1)
    with pytest.raises(ConfigError, match=needle):
        CameraNode(context=ros_context, parameter_overrides=overrides(**{"device": str(tmp_path / "clip.avi"),
                                                                         **params}))
