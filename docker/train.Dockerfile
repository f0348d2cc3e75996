# syntax=docker/dockerfile:1
# Training and simulation image (GPU workstation or cluster node): `robot-offrl train`, `sweep`,
# `sim build-dataset`, `demo`, and torchrun for several GPUs. See docs/docker.md.
#
#   docker build -f docker/train.Dockerfile -t robot-offrl-train .          # from the repository root
#   docker run --rm --gpus all -v "$PWD/data:/data" -v "$PWD/runs:/runs" robot-offrl-train \
#       train task=lift algo=rise data=/data/lift_rise.zarr out=/runs/lift_rise
#
# The base only supplies the NVIDIA container hooks and Ubuntu 24.04 (Python 3.12, the same Python as
# ROS 2 Jazzy in robot.Dockerfile): the torch wheel carries its own CUDA and cuDNN libraries, so the
# larger cudnn-runtime flavour would ship them twice.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04

# ---------------------------------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS build
# Same pins as the Makefile's TORCH_SPEC; pick the index that matches the host driver (cu126, cu128,
# cu130, ... or cpu), see https://pytorch.org/get-started/locally/.
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# Build tools stay in this stage: egl_probe (a robomimic dependency) is published as source only and
# compiles a small C++ program with cmake when pip installs it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-dev build-essential cmake git ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch alone first: by far the largest download and the slowest to change, so it keeps its own layer.
RUN pip install --index-url "${TORCH_INDEX_URL}" \
        "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"
WORKDIR /opt/robot_offrl
COPY pyproject.toml README.md ./
COPY robot_offrl ./robot_offrl
COPY sim ./sim
COPY hardware ./hardware
COPY cli ./cli
COPY configs ./configs
COPY datasets ./datasets
# Editable on purpose: robot_offrl and robot_offrl_sim find configs/ and datasets/ beside their source
# (robot_offrl.config.config_dir), which a wheel would leave behind.
RUN pip install -e ".[sim]" \
    && python -c "import robot_offrl_cli.main, robot_offrl_sim, torch; print('torch', torch.__version__)"

# ---------------------------------------------------------------------------------------------------
FROM ${CUDA_IMAGE}
# Match your host user's uid so files written to the /data and /runs bind mounts belong to you.
ARG USER_UID=1000
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive
# Offscreen MuJoCo rendering for sweeps and image datasets: EGL through glvnd (NVIDIA's EGL with
# --gpus all, Mesa's llvmpipe otherwise) and OSMesa as the fallback (MUJOCO_GL=osmesa); libgl1 and
# glib for opencv-python, which robosuite depends on.
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
        python3 libegl1 libgl1-mesa-dri libegl-mesa0 libosmesa6 libgl1 libglib2.0-0t64 \
    && rm -rf /var/lib/apt/lists/*
# Ubuntu 24.04 images ship a user "ubuntu" with uid 1000: remove it so USER_UID=1000 is free.
RUN if id ubuntu >/dev/null 2>&1; then userdel --remove ubuntu; fi \
    && if getent group ubuntu >/dev/null; then groupdel ubuntu; fi \
    && groupadd --gid "${USER_UID}" robot \
    && useradd --create-home --uid "${USER_UID}" --gid robot --shell /bin/bash robot \
    && mkdir -p /data /runs /workspace \
    && chown robot:robot /data /runs /workspace
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/robot_offrl /opt/robot_offrl
# graphics in NVIDIA_DRIVER_CAPABILITIES makes the container toolkit mount the driver's EGL library,
# so MuJoCo renders on the GPU; compute,utility alone (the base image's value) gives CUDA only.
ENV PATH=/opt/venv/bin:$PATH \
    MUJOCO_GL=egl \
    PYOPENGL_PLATFORM=egl \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics \
    PYTHONUNBUFFERED=1
# Numeric, so Kubernetes runAsNonRoot and similar checks can verify it is not root.
USER ${USER_UID}:${USER_UID}
# The README's commands work unchanged from here: datasets/ and configs/ are the installed copies,
# data/ and runs/ are the volumes (so `--out data/x.zarr` and `out=runs/x` persist on the host).
WORKDIR /workspace
RUN ln -s /opt/robot_offrl/datasets datasets \
    && ln -s /opt/robot_offrl/configs configs \
    && ln -s /data data \
    && ln -s /runs runs
VOLUME ["/data", "/runs"]
ENTRYPOINT ["robot-offrl"]
CMD ["--help"]
