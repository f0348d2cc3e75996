"""ament_python build of the robot_offrl_ros package (colcon build on the robot computer).

The scripts land in lib/robot_offrl_ros (setup.cfg) where `ros2 run` and launch_ros look for
them; launch/ and config/ are installed into share/robot_offrl_ros.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "robot_offrl_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="robot_offrl maintainers",
    maintainer_email="robot-offrl@example.org",
    description="Lifecycle policy node and camera node for robot_offrl policies on a physical arm",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "policy_node = robot_offrl_ros.entry:policy_node",
            "camera_node = robot_offrl_ros.entry:camera_node",
            "sim_arm_node = robot_offrl_ros.entry:sim_arm_node",
            "sim_leader_node = robot_offrl_ros.entry:sim_leader_node",
        ],
    },
)
