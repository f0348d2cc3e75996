#!/usr/bin/env bash
# Entry point of the robot image (docker/robot.Dockerfile). Sources ROS 2 and the colcon workspace, then
#   - no arguments, or launch arguments only (name:=value):
#       ros2 launch robot_offrl_ros policy.launch.py checkpoint:=$CHECKPOINT <your arguments>
#     (checkpoint:= is added only when you did not pass one, so yours always wins);
#   - anything else is run as a command in the sourced environment, e.g. `bash`,
#     `ros2 topic list`, `robot-offrl record --ros --config ... --out ...`.
# Not `set -u`: the ROS setup scripts read variables that may be unset.
set -eo pipefail

: "${ROS_DISTRO:?ROS_DISTRO is not set: this entry point expects a ros:<distro> base image}"
ros_setup="${ROS_SETUP:-/opt/ros/${ROS_DISTRO}/setup.bash}"
workspace_setup="${WORKSPACE_SETUP:-/ws/install/setup.bash}"
for setup in "${ros_setup}" "${workspace_setup}"; do
  if [ ! -f "${setup}" ]; then
    echo "robot_offrl entrypoint: ${setup} is missing; was the image built from docker/robot.Dockerfile?" >&2
    exit 1
  fi
  # shellcheck disable=SC1090  # the path is only known at run time
  source "${setup}"
done

launch_args_only=true
has_checkpoint=false
for arg in "$@"; do
  case "${arg}" in
    checkpoint:=*) has_checkpoint=true ;;
    *:=*) ;;
    *) launch_args_only=false ;;
  esac
done

if [ "$#" -eq 0 ] || [ "${launch_args_only}" = true ]; then
  if [ "${has_checkpoint}" = false ]; then
    set -- "checkpoint:=${CHECKPOINT:-/checkpoint}" "$@"
  fi
  exec ros2 launch robot_offrl_ros policy.launch.py "$@"
fi
exec "$@"
