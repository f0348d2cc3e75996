"""Camera subscription QoS, shared by the policy node and the recorder.

Raw camera frames are large (640x480 rgb8 is 900 kB, hundreds of DDS fragments). With best-effort
delivery, one lost fragment drops the whole frame, which under load starved the policy node's camera
watchdog (docs/benchmarks.md); a reliable subscription gets the lost fragments resent. It only matches
a reliable publisher, so drivers that publish best effort need ``camera_reliability: best_effort``.
"""

from __future__ import annotations

from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from .params import check_camera_reliability


def camera_qos(reliability: str) -> QoSProfile:
    """The subscription profile for ``camera_reliability``: depth 1, only the newest frame matters."""
    check_camera_reliability(reliability)
    if reliability == "best_effort":
        return qos_profile_sensor_data
    return QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
