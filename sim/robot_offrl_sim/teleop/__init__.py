"""Teleoperation recording in robosuite: input devices and the robosuite back end (docs/recording.md).

The record loop and its episode controls live in the library (``robot_offrl.record``), shared with
the ROS 2 recorder; ``sim_backend`` is the robosuite side and ``devices`` loads robosuite's drivers
only when opened.
"""
