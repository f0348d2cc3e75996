"""Recording episodes: the record loop, its controls and the back-end interface (docs/recording.md).

One floor above the episode store, below sim and ROS: ``robot_offrl_sim.teleop`` provides the
robosuite back end and teleop devices, ``robot_offrl_ros.recorder`` the ROS 2 arm back end. Nothing
here imports robosuite or rclpy.
"""
