"""Launch the simulated arm: a robosuite task behind the ROS 2 interfaces policy_node drives.

    ros2 launch robot_offrl_ros sim_arm.launch.py params_file:=/path/to/my_sim_arm.yaml

Then start policy_node against it (policy.launch.py ... use_sim_time:=true enable_control:=true);
see docs/deploy.md, "Rehearse on the simulated arm". The sim arm is the clock source, so it never
runs on use_sim_time itself.
"""

from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PACKAGE = "robot_offrl_ros"


def generate_launch_description() -> LaunchDescription:
    config_dir = PathJoinSubstitution([FindPackageShare(PACKAGE), "config"])
    args = [
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([config_dir, "sim_arm.yaml"]),
            description="sim arm parameters: copy config/sim_arm.yaml to change task, cameras or episode",
        ),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the sim arm"),
    ]
    sim_arm = Node(
        package=PACKAGE,
        executable="sim_arm_node",
        name="sim_arm",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[
            LaunchConfiguration("params_file"),
            {"use_sim_time": False},
        ],
    )
    return LaunchDescription([*args, sim_arm])
