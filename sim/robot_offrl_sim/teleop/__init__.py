"""Teleoperation recording: input devices, key bindings and the record loop (docs/recording.md).

``controls`` and ``session`` import neither robosuite nor rclpy (the ROS 2 recorder reuses them);
``sim_backend`` is the robosuite side and ``devices`` loads robosuite's drivers only when opened.
"""
