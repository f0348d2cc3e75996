# syntax=docker/dockerfile:1
# Robot computer image: ROS 2 Jazzy, robot_offrl (PolicyRuntime) and the robot_offrl_ros package built
# with colcon. The entry point runs
#   ros2 launch robot_offrl_ros policy.launch.py checkpoint:=/checkpoint <launch arguments>
# See docs/docker.md (build, run, GPU) and docs/deploy.md (what the nodes do, dry run first).
#
#   docker build -f docker/robot.Dockerfile -t robot-offrl-robot .                  # CPU torch
#   docker build -f docker/robot.Dockerfile -t robot-offrl-robot:cuda \
#       --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .       # CUDA torch
#
# Pin the base by digest for a reproducible robot image: ros:jazzy-ros-base-noble@sha256:<digest>
# (`docker buildx imagetools inspect ros:jazzy-ros-base-noble` prints it).
ARG ROS_IMAGE=ros:jazzy-ros-base-noble
FROM ${ROS_IMAGE}

# CPU torch by default: a robot computer often has no GPU, and the CPU wheel is ~10x smaller. The CUDA
# wheel brings its own CUDA libraries, so the same ROS base serves both (run with --gpus all).
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# Match the host user's uid so files written to bind mounts (recorded stores) belong to them.
ARG USER_UID=1000
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# python3-venv for the virtual environment; cmake for egl_probe (a robomimic dependency published as
# source only); libgl1/glib for opencv-python, which robosuite depends on.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv cmake libgl1 libglib2.0-0t64 \
    && rm -rf /var/lib/apt/lists/*

# --system-site-packages: the venv still sees rclpy, colcon and the message packages from /opt/ros and
# apt, while pip's packages stay out of the system Python (PEP 668), as docs/deploy.md sets it up.
RUN python3 -m venv --system-site-packages /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --index-url "${TORCH_INDEX_URL}" \
        "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"

WORKDIR /opt/robot_offrl
COPY pyproject.toml README.md ./
COPY robot_offrl ./robot_offrl
COPY sim ./sim
COPY hardware ./hardware
COPY cli ./cli
COPY configs ./configs
# Editable, as in the training image: configs/ stays found beside the source. sim/ is only source
# (setuptools finds packages there): without the [sim] extra there is no simulator (robosuite, mujoco)
# in this image; the record loop `robot-offrl record --ros` runs is the library's (robot_offrl.record).
# robomimic (no simulator; its egl_probe dependency is what cmake above is for) runs camera policies.
RUN pip install -e . "robomimic==0.3.0"

# The colcon workspace links the package source; colcon runs under the venv's Python so the installed
# policy_node / camera_node scripts start with it and can import torch and robot_offrl.
WORKDIR /ws
RUN mkdir -p src \
    && ln -s /opt/robot_offrl/hardware src/robot_offrl_ros \
    && apt-get update \
    && rosdep update --rosdistro "${ROS_DISTRO}" \
    && rosdep install --from-paths src --ignore-src -y --rosdistro "${ROS_DISTRO}" \
    && rm -rf /var/lib/apt/lists/* \
    && . "/opt/ros/${ROS_DISTRO}/setup.bash" \
    && python -m colcon build --packages-select robot_offrl_ros \
    && rm -rf build log

COPY docker/ros_entrypoint.sh /usr/local/bin/robot_offrl_entrypoint.sh

# Ubuntu 24.04 images ship a user "ubuntu" with uid 1000: remove it so USER_UID=1000 is free. The user
# joins "video" for /dev/video* (compose also passes the host's video gid, which may differ).
RUN if id ubuntu >/dev/null 2>&1; then userdel --remove ubuntu; fi \
    && if getent group ubuntu >/dev/null; then groupdel ubuntu; fi \
    && groupadd --gid "${USER_UID}" robot \
    && useradd --create-home --uid "${USER_UID}" --gid robot --groups video --shell /bin/bash robot \
    && mkdir -p /checkpoint /data \
    && chown robot:robot /data
# Numeric, so Kubernetes runAsNonRoot and similar checks can verify it is not root.
USER ${USER_UID}:${USER_UID}
WORKDIR /home/robot
ENV CHECKPOINT=/checkpoint \
    PYTHONUNBUFFERED=1
VOLUME ["/checkpoint", "/data"]
ENTRYPOINT ["/usr/local/bin/robot_offrl_entrypoint.sh"]
CMD []
