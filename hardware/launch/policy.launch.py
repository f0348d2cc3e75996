"""Launch the robot_offrl policy node (and optionally the camera node) on a ROS 2 robot computer.

    ros2 launch robot_offrl_ros policy.launch.py checkpoint:=/data/runs/lift/checkpoints/latest \
        params_file:=/path/to/my_arm.yaml enable_control:=false autostart:=true start_camera:=true

Control stays off unless enable_control:=true is given explicitly: a first launch is a dry run.
"""

from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PACKAGE = "robot_offrl_ros"


def generate_launch_description() -> LaunchDescription:
    config_dir = PathJoinSubstitution([FindPackageShare(PACKAGE), "config"])
    args = [
        DeclareLaunchArgument("checkpoint", default_value="", description="run or checkpoint folder"),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([config_dir, "policy.yaml"]),
            description="policy node parameters (copy config/policy.yaml and adapt it to your arm)",
        ),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of both nodes"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock"),
        DeclareLaunchArgument(
            "enable_control", default_value="false", description="true sends commands to the controllers"
        ),
        DeclareLaunchArgument(
            "autostart", default_value="false", description="configure, then activate once observations are fresh"
        ),
        DeclareLaunchArgument("start_camera", default_value="false", description="also start camera_node"),
        DeclareLaunchArgument(
            "camera_params_file",
            default_value=PathJoinSubstitution([config_dir, "camera.yaml"]),
            description="camera node parameters",
        ),
    ]
    use_sim_time = ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool)
    policy_node = LifecycleNode(
        package=PACKAGE,
        executable="policy_node",
        name="policy_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "checkpoint": ParameterValue(LaunchConfiguration("checkpoint"), value_type=str),
                "enable_control": ParameterValue(LaunchConfiguration("enable_control"), value_type=bool),
                "autostart": ParameterValue(LaunchConfiguration("autostart"), value_type=bool),
                "use_sim_time": use_sim_time,
            },
        ],
    )
    camera_node = Node(
        package=PACKAGE,
        executable="camera_node",
        name="camera_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[LaunchConfiguration("camera_params_file"), {"use_sim_time": use_sim_time}],
        condition=IfCondition(LaunchConfiguration("start_camera")),
    )
    return LaunchDescription([*args, policy_node, camera_node])
