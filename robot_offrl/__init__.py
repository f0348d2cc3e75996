"""robot_offrl: turn a few expert demonstrations plus cheap non-expert data into a robust policy.

Importing the library pulls in neither a simulator nor ROS: robosuite lives behind
``robot_offrl_sim`` and rclpy behind ``robot_offrl_ros``.
"""

__version__ = "0.1.0"
