"""Camera messages to observation arrays, and back, without cv_bridge.

cv_bridge is not on PyPI and drags a C++ build into the robot computer; the few encodings a
policy needs are decoded here with numpy and OpenCV. ``fit_image`` is THE image preprocessing
of the project: a real camera frame and a simulator frame both go through it to reach the
checkpoint's observation shape, so the arm sees exactly what training saw.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from robot_offrl.errors import ObservationError

# Channels per raw encoding this codec understands (8 bits per channel).
RAW_ENCODINGS: dict[str, int] = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4}
COMPRESSED_FORMATS = ("jpeg", "jpg", "png")


def decode_raw(
    height: int, width: int, encoding: str, step: int, data: Any, source: str = "image"
) -> np.ndarray:
    """Decode a raw sensor_msgs/Image payload to an upright RGB uint8 (H, W, 3) array.

    ``step`` may exceed ``width * channels`` (row padding from some drivers), so rows are
    sliced rather than reshaped blindly.
    """
    channels = RAW_ENCODINGS.get(encoding)
    if channels is None:
        raise ObservationError(
            f"{source}: image encoding {encoding!r} is not supported; publish one of "
            f"{sorted(RAW_ENCODINGS)} or a CompressedImage (jpeg/png)"
        )
    row_bytes = width * channels
    if height <= 0 or width <= 0 or step < row_bytes:
        raise ObservationError(
            f"{source}: bad image geometry height={height} width={width} step={step} for "
            f"{encoding!r} (step must be at least width*{channels}={row_bytes})"
        )
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size < step * height:
        raise ObservationError(
            f"{source}: image data has {buf.size} bytes, expected step*height={step * height}"
        )
    img = buf[: step * height].reshape(height, step)[:, :row_bytes].reshape(height, width, channels)
    if encoding == "rgb8":
        return np.ascontiguousarray(img)
    if encoding == "bgr8":
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if encoding == "mono8":
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if encoding == "rgba8":
        return cv2.cvtColor(img, cv2.COLOR_RGBA2RGB)
    return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)


def decode_compressed(fmt: str, data: Any, source: str = "image") -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage (JPEG or PNG) to RGB uint8 (H, W, 3)."""
    # image_transport writes e.g. "jpeg", "rgb8; jpeg compressed bgr8" or "png".
    lowered = fmt.lower()
    if not any(name in lowered for name in COMPRESSED_FORMATS):
        raise ObservationError(
            f"{source}: compressed format {fmt!r} is not supported; use jpeg or png "
            "(image_transport 'compressed')"
        )
    buf = np.frombuffer(data, dtype=np.uint8)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if buf.size else None
    if bgr is None:
        raise ObservationError(f"{source}: could not decode the {fmt!r} payload ({buf.size} bytes)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def decode_image(msg: Any, source: str = "image") -> np.ndarray:
    """Decode a sensor_msgs/Image or sensor_msgs/CompressedImage to RGB uint8 (H, W, 3)."""
    if hasattr(msg, "format"):
        return decode_compressed(msg.format, msg.data, source)
    return decode_raw(msg.height, msg.width, msg.encoding, msg.step, msg.data, source)


def fit_image(rgb: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Centre-crop ``rgb`` to the target aspect ratio, then resize to ``shape`` (H, W, C).

    Cropping before resizing keeps objects undistorted whatever the camera's aspect ratio,
    and a frame already at the target size (a simulator render at the schema's size) passes
    through untouched, so sim and real preprocessing agree exactly.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ObservationError(
            f"fit_image expects an RGB uint8 (H, W, 3) array, got dtype {rgb.dtype} shape {rgb.shape}"
        )
    if len(shape) != 3 or shape[2] not in (1, 3) or shape[0] <= 0 or shape[1] <= 0:
        raise ObservationError(f"image observation shape must be (H, W, 1 or 3), got {tuple(shape)}")
    out_h, out_w, out_c = (int(v) for v in shape)
    h, w = rgb.shape[:2]
    if w * out_h > out_w * h:  # source wider than target: crop columns
        crop_w = max(1, round(h * out_w / out_h))
        x0 = (w - crop_w) // 2
        rgb = rgb[:, x0 : x0 + crop_w]
    elif w * out_h < out_w * h:  # source taller than target: crop rows
        crop_h = max(1, round(w * out_h / out_w))
        y0 = (h - crop_h) // 2
        rgb = rgb[y0 : y0 + crop_h]
    if rgb.shape[:2] != (out_h, out_w):
        shrinking = rgb.shape[0] >= out_h and rgb.shape[1] >= out_w
        interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        rgb = cv2.resize(rgb, (out_w, out_h), interpolation=interp)
    if out_c == 1:
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[:, :, None]
    return np.ascontiguousarray(rgb)


def to_image_msg(rgb: np.ndarray, encoding: str = "rgb8", frame_id: str = "", stamp: Any = None) -> Any:
    """Build a sensor_msgs/Image from an RGB uint8 array (used by the camera node and tests)."""
    from sensor_msgs.msg import Image

    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ObservationError(f"to_image_msg expects RGB uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    if encoding == "rgb8":
        pixels = rgb
    elif encoding == "bgr8":
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    elif encoding == "mono8":
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[:, :, None]
    else:
        raise ObservationError(f"to_image_msg: encoding {encoding!r} not supported; use rgb8, bgr8 or mono8")
    msg = Image()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(pixels.shape[1] * pixels.shape[2])
    msg.data = np.ascontiguousarray(pixels).tobytes()
    return msg


def to_compressed_msg(
    rgb: np.ndarray, fmt: str = "jpeg", quality: int = 95, frame_id: str = "", stamp: Any = None
) -> Any:
    """Build a sensor_msgs/CompressedImage (JPEG or PNG) from an RGB uint8 array."""
    from sensor_msgs.msg import CompressedImage

    if fmt not in ("jpeg", "png"):
        raise ObservationError(f"to_compressed_msg: format {fmt!r} not supported; use jpeg or png")
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else []
    ok, encoded = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", bgr, params)
    if not ok:
        raise ObservationError(f"to_compressed_msg: OpenCV could not encode a {rgb.shape} image as {fmt}")
    msg = CompressedImage()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.format = fmt
    msg.data = encoded.tobytes()
    return msg
