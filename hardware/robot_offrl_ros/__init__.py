"""ROS 2 deployment of robot_offrl policies: the lifecycle policy node and the camera node.

Only the node modules import rclpy; the pure parts (image codec, safety filter, scheduling,
watchdog) import without ROS so that they can be unit-tested and reused anywhere.
"""
