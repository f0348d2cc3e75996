"""A minimal camera driver: OpenCV VideoCapture -> sensor_msgs/Image (+ optional JPEG).

Labs without a vendor ROS 2 driver can start this from the policy launch file; it also plays a
video file (``loop:=true``) so the whole pipeline can be dry-run at a desk. When the device
stops delivering frames it publishes nothing and tries to reopen it: the policy node's
watchdog, not this node, decides that the arm must hold.
"""

from __future__ import annotations

import sys
from typing import Any

import cv2
import numpy as np
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from robot_offrl.errors import ConfigError

from .image_codec import to_compressed_msg, to_image_msg
from .spinning import run_node

# Reliable, like image_transport: matches reliable and best-effort subscribers alike, and a reliable
# subscriber (the policy node's default) gets lost fragments of a big frame resent instead of losing it.
IMAGE_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
CAMERA_PARAMS: dict[str, tuple[Any, str]] = {
    "device": ("0", "camera index (0, 1, ...), /dev/videoN, a video file or a stream URL"),
    "topic": ("image_raw", "sensor_msgs/Image topic (relative names land in the node's namespace)"),
    "frame_id": ("camera", "header.frame_id of every image"),
    "width": (0, "requested capture width in pixels; 0 keeps the device default"),
    "height": (0, "requested capture height in pixels; 0 keeps the device default"),
    "fps": (30.0, "publication rate in Hz"),
    "encoding": ("rgb8", "rgb8 or bgr8"),
    "jpeg_quality": (0, "0: raw only; 1-100: also publish CompressedImage JPEG on <topic>/compressed"),
    "loop": (False, "restart a video file at its end instead of stopping"),
}


def open_capture(device: str, width: int, height: int) -> cv2.VideoCapture:
    """Open ``device`` (an index when it is all digits) or raise a ConfigError saying what to check."""
    source: int | str = int(device) if device.isdigit() else device
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        raise ConfigError(
            f"camera device {device!r} could not be opened; check the index or path "
            "(ls /dev/video*, v4l2-ctl --list-devices) and that no other process holds it"
        )
    if width > 0:
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
    if height > 0:
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
    return cap


class CameraNode(Node):
    """Publishes one camera's frames at a fixed rate, stamped at capture time."""

    def __init__(self, node_name: str = "camera_node", **node_kwargs: Any) -> None:
        super().__init__(node_name, **node_kwargs)
        for name, (default, description) in CAMERA_PARAMS.items():
            self.declare_parameter(name, default, ParameterDescriptor(description=description))
        p = {name: self.get_parameter(name).value for name in CAMERA_PARAMS}
        if p["encoding"] not in ("rgb8", "bgr8"):
            raise ConfigError(f"camera encoding must be rgb8 or bgr8, got {p['encoding']!r}")
        if not p["fps"] > 0:
            raise ConfigError(f"camera fps must be > 0, got {p['fps']}")
        if not 0 <= p["jpeg_quality"] <= 100:
            raise ConfigError(f"jpeg_quality must be 0 (off) to 100, got {p['jpeg_quality']}")
        self._p = p
        self._cap = open_capture(str(p["device"]), int(p["width"]), int(p["height"]))
        self._pub = self.create_publisher(Image, p["topic"], IMAGE_QOS)
        self._jpeg_pub = None
        if p["jpeg_quality"]:
            self._jpeg_pub = self.create_publisher(CompressedImage, f"{p['topic']}/compressed", IMAGE_QOS)
        self._failures = 0
        self.frames_published = 0
        self._timer = self.create_timer(1.0 / p["fps"], self._tick)

    def _read(self) -> np.ndarray | None:
        ok, bgr = self._cap.read()
        if not ok and self._p["loop"]:
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self._cap.read()
        return bgr if ok else None

    def _tick(self) -> None:
        bgr = self._read()
        if bgr is None:
            self._failures += 1
            if self._failures == 1:
                self.get_logger().error(f"camera {self._p['device']!r} returned no frame; retrying")
            if self._failures % int(max(1, self._p["fps"])) == 0:  # about once a second
                self._cap.release()
                try:
                    self._cap = open_capture(str(self._p["device"]), int(self._p["width"]), int(self._p["height"]))
                except ConfigError as exc:
                    self.get_logger().error(str(exc))
            return
        self._failures = 0
        stamp = self.get_clock().now().to_msg()
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        self._pub.publish(to_image_msg(rgb, self._p["encoding"], self._p["frame_id"], stamp))
        if self._jpeg_pub is not None:
            self._jpeg_pub.publish(to_compressed_msg(rgb, "jpeg", self._p["jpeg_quality"], self._p["frame_id"], stamp))
        self.frames_published += 1

    def destroy_node(self) -> None:
        self._cap.release()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Console entry point; a device that cannot be opened exits with one clear line, code 1.

    Stops on SIGINT/SIGTERM like the policy node (spinning.StopSignals): the timer stops before
    the context goes, so no publish ever meets an invalid context; exit code 0.
    """
    return run_node("camera_node", CameraNode, args)


if __name__ == "__main__":
    sys.exit(main())
