"""Every name the Dockerfiles and compose file rely on exists where they expect it.

COPY sources exist and pass .dockerignore; entry points are console scripts or copied executables;
the ROS 2 package, launch file, launch arguments, config files and node executables match
hardware/package.xml, hardware/setup.py, the launch file and pyproject.toml.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path, PurePosixPath

import pytest
import yaml
from ship_support import (
    DOCKER,
    DOCKERFILES,
    REPO,
    Instruction,
    copy_sources,
    dockerfile_instructions,
    dockerignore_rules,
    exec_form,
    is_ignored,
    project_scripts,
)

HARDWARE = REPO / "hardware"
LAUNCH_FILE = HARDWARE / "launch" / "policy.launch.py"
ENTRYPOINT_SCRIPT = DOCKER / "ros_entrypoint.sh"
COMPOSE = DOCKER / "compose.yaml"


def _ros_package_name() -> str:
    name = ET.parse(HARDWARE / "package.xml").getroot().findtext("name")
    assert name, "hardware/package.xml has no <name>"
    return name


def _setup_py_console_scripts() -> dict[str, str]:
    """console_scripts of hardware/setup.py, read from its AST (running it needs colcon's context)."""
    tree = ast.parse((HARDWARE / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    entries = [ast.literal_eval(elt) if isinstance(elt, ast.Constant) else None
                               for elt in value.elts]  # type: ignore[attr-defined]
                    if any(e is None for e in entries):  # f-strings: evaluate with PACKAGE
                        entries = [_fstring(elt) for elt in value.elts]  # type: ignore[attr-defined]
                    return dict(tuple(part.strip() for part in e.split("=", 1)) for e in entries)
    raise AssertionError("hardware/setup.py declares no console_scripts")


def _fstring(node: ast.expr) -> str:
    if isinstance(node, ast.Constant):
        return str(node.value)
    assert isinstance(node, ast.JoinedStr)
    return "".join(str(v.value) if isinstance(v, ast.Constant) else _ros_package_name() for v in node.values)


def _launch_calls(func_name: str) -> list[ast.Call]:
    tree = ast.parse(LAUNCH_FILE.read_text())
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == func_name]


def _declared_launch_arguments() -> set[str]:
    return {call.args[0].value for call in _launch_calls("DeclareLaunchArgument")}  # type: ignore[attr-defined]


def _launch_executables() -> set[str]:
    names = set()
    for func in ("Node", "LifecycleNode"):
        for call in _launch_calls(func):
            names |= {kw.value.value for kw in call.keywords if kw.arg == "executable"}  # type: ignore[attr-defined]
    return names


def _image_files(instructions: list[Instruction]) -> dict[str, str]:
    """Absolute image path -> repository path, for every COPY from the build context (last stage wins)."""
    workdir = PurePosixPath("/")
    placed: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "FROM":
            workdir = PurePosixPath("/")
        elif ins.keyword == "WORKDIR":
            workdir = workdir / ins.args
        elif ins.keyword == "COPY":
            sources, dest, from_stage = copy_sources(ins)
            if from_stage:
                continue
            target = workdir / dest
            for src in sources:
                placed[str(target / PurePosixPath(src).name) if dest.endswith("/") else str(target)] = src
    return placed


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_copy_sources_exist_and_reach_the_build_context(dockerfile: Path):
    rules = dockerignore_rules(REPO / ".dockerignore")
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    copies = [ins for ins in dockerfile_instructions(dockerfile) if ins.keyword in ("COPY", "ADD")]
    assert copies, f"{dockerfile.name} copies nothing"
    for ins in copies:
        assert ins.keyword == "COPY", f"{dockerfile.name}:{ins.line}: use COPY, not ADD"
        sources, _dest, from_stage = copy_sources(ins)
        if from_stage:
            continue
        for src in sources:
            path = REPO / src
            assert path.exists(), f"{dockerfile.name}:{ins.line}: COPY source {src} is not in the repository"
            assert not is_ignored(src, rules), f"{dockerfile.name}:{ins.line}: .dockerignore drops {src}"
            if path.is_dir():  # what git tracks there must reach the image too (caches may not)
                inside = [f for f in tracked.splitlines() if f.startswith(src.rstrip("/") + "/")]
                assert inside, f"{src} holds no tracked files"
                dropped = [f for f in inside if is_ignored(f, rules) and "__pycache__" not in f]
                assert not dropped, f".dockerignore drops tracked files the image needs: {dropped[:5]}"


def test_dockerignore_keeps_generated_data_out():
    rules = dockerignore_rules(REPO / ".dockerignore")
    for path in (".venv/bin/python", ".git/HEAD", "data/lift.zarr/zarr.json", "runs/x/checkpoints/latest",
                 "demo_out/results.md", "tests/ship/test_ship_paths.py", "robot_offrl/__pycache__/a.pyc",
                 "configs/lift.zarr/zarr.json"):
        assert is_ignored(path, rules), f"{path} would be sent to the Docker daemon"


def test_train_image_entrypoint_is_the_console_script():
    instructions = dockerfile_instructions(DOCKER / "train.Dockerfile")
    entry = [exec_form(i.args) for i in instructions if i.keyword == "ENTRYPOINT"][-1]
    assert entry[0] in project_scripts(), f"ENTRYPOINT {entry[0]} is not in [project.scripts]"
    assert entry == ["robot-offrl"]
    env = " ".join(i.args for i in instructions if i.keyword == "ENV")
    assert "MUJOCO_GL=egl" in env
    volumes = [exec_form(i.args) for i in instructions if i.keyword == "VOLUME"]
    assert ["/data", "/runs"] in volumes
    users = [i.args for i in instructions if i.keyword == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0"), "the training image must not run as root"
    apt = " ".join(i.args for i in instructions if i.keyword == "RUN" and "apt-get install" in i.args)
    for package in ("libegl1", "libgl1-mesa-dri", "libegl-mesa0", "libosmesa6"):
        assert re.search(rf"(?<![\w-]){re.escape(package)}(?![\w-])", apt), f"{package} is not installed"


def test_train_image_workdir_links_resolve():
    """/workspace links datasets/, configs/ to the installed source and data/, runs/ to the volumes, so the
    README's relative commands work inside the container."""
    instructions = dockerfile_instructions(DOCKER / "train.Dockerfile")
    placed = _image_files(instructions)
    assert "COPY --from=build /opt/robot_offrl /opt/robot_offrl" in [f"COPY {i.args}" for i in instructions]
    volumes = [exec_form(i.args) for i in instructions if i.keyword == "VOLUME"][-1]
    links = dict((name, target) for target, name in re.findall(
        r"ln -s (\S+) (\S+)", " ".join(i.args for i in instructions if i.keyword == "RUN")))
    assert set(links) == {"datasets", "configs", "data", "runs"}
    for name, target in links.items():
        if target.startswith("/opt/robot_offrl/"):
            assert placed.get(target) == name and (REPO / name).is_dir(), f"{target} is not copied from {name}/"
        else:
            assert target in volumes, f"{name} -> {target} is not a volume"


def test_robot_image_entrypoint_is_the_copied_script():
    instructions = dockerfile_instructions(DOCKER / "robot.Dockerfile")
    entry = [exec_form(i.args) for i in instructions if i.keyword == "ENTRYPOINT"][-1]
    placed = _image_files(instructions)
    assert entry[0] in placed, f"ENTRYPOINT {entry[0]} is not a file the Dockerfile copies"
    source = REPO / placed[entry[0]]
    assert source == ENTRYPOINT_SCRIPT
    assert os.access(source, os.X_OK), f"{source} must be executable (COPY keeps the mode)"
    mode = subprocess.run(["git", "ls-files", "-s", str(source)], cwd=REPO, capture_output=True, text=True).stdout
    assert not mode or mode.startswith("100755"), "commit docker/ros_entrypoint.sh with its executable bit"


def test_robot_image_builds_the_package_the_entrypoint_launches():
    package = _ros_package_name()
    instructions = dockerfile_instructions(DOCKER / "robot.Dockerfile")
    placed = _image_files(instructions)
    run_text = " ".join(i.args for i in instructions if i.keyword == "RUN")
    link = re.search(r"ln -s (\S+) src/(\S+)", run_text)
    assert link, "the colcon workspace does not link the package source"
    assert link.group(2) == package
    linked_dir = link.group(1)
    assert placed.get(linked_dir) == "hardware", f"{linked_dir} is not where hardware/ is copied"
    assert f"--packages-select {package}" in run_text
    assert "rosdep install --from-paths src" in run_text

    script = ENTRYPOINT_SCRIPT.read_text()
    launch = re.search(r"exec ros2 launch (\S+) (\S+)", script)
    assert launch, "the entry point does not run ros2 launch"
    assert launch.group(1) == package
    assert (HARDWARE / "launch" / launch.group(2)).is_file()
    setup = (HARDWARE / "setup.py").read_text()
    assert 'glob("launch/*.launch.py")' in setup, "setup.py must install launch/*.launch.py into share/"
    assert 'glob("config/*.yaml")' in setup, "setup.py must install config/*.yaml into share/"
    default_checkpoint = re.search(r"checkpoint:=\$\{CHECKPOINT:-(\S+?)\}", script)
    assert default_checkpoint
    volumes = [exec_form(i.args) for i in instructions if i.keyword == "VOLUME"][-1]
    assert default_checkpoint.group(1) in volumes


def test_launch_file_executables_are_installed_console_scripts():
    ros_scripts = _setup_py_console_scripts()
    executables = _launch_executables()
    assert executables == {"policy_node", "camera_node"}
    for name in executables:
        assert name in ros_scripts, f"launch file starts {name}, hardware/setup.py does not install it"
        assert project_scripts().get(name) == ros_scripts[name], f"{name}: pyproject and setup.py disagree"
        module = ros_scripts[name].split(":")[0]
        assert (HARDWARE / Path(*module.split("."))).with_suffix(".py").is_file()


def _compose_service() -> dict:
    compose = yaml.safe_load(COMPOSE.read_text())
    assert set(compose["services"]) == {"policy"}
    return compose["services"]["policy"]


def _interpolate_default(text: str) -> tuple[str, bool]:
    """Compose's ${VAR:-default} -> default; ${VAR:?message} -> ("", required)."""
    match = re.fullmatch(r"\$\{(\w+)(:-|:\?)([^}]*)\}", text)
    if not match:
        return text, False
    return (match.group(3), False) if match.group(2) == ":-" else ("", True)


def test_compose_builds_the_robot_image_with_host_network_camera_and_domain():
    service = _compose_service()
    context = (COMPOSE.parent / service["build"]["context"]).resolve()
    assert context == REPO, "the build context must be the repository root (.dockerignore lives there)"
    assert (context / service["build"]["dockerfile"]) == DOCKER / "robot.Dockerfile"
    assert service["network_mode"] == "host"
    assert "/dev/video0:/dev/video0" in service["devices"]
    assert "ROS_DOMAIN_ID" in service["environment"]
    assert service["restart"] == "no"


def test_compose_mounts_and_launch_arguments_resolve():
    service = _compose_service()
    mounts: dict[str, tuple[str, bool]] = {}
    for volume in service["volumes"]:
        host, container = volume.split(":")[0], volume.split(":")[1]
        if host.startswith("${"):
            host = volume[: volume.index("}") + 1]
            container = volume[len(host) + 1 :].split(":")[0]
        mounts[container] = _interpolate_default(host)
    declared = _declared_launch_arguments()
    arguments = dict(arg.split(":=", 1) for arg in service["command"])
    assert set(arguments) <= declared, f"not declared in policy.launch.py: {set(arguments) - declared}"
    assert arguments["start_camera"] == "true"
    assert _interpolate_default(arguments["enable_control"])[0] == "false", "compose must default to a dry run"
    checkpoint_host, required = mounts[arguments["checkpoint"]]
    assert required and not checkpoint_host, "the checkpoint folder must be asked for, not defaulted"
    for key in ("params_file", "camera_params_file"):
        container_path = PurePosixPath(arguments[key])
        host_dir, _ = mounts[str(container_path.parent)]
        host_file = (COMPOSE.parent / host_dir / container_path.name).resolve()
        assert host_file.is_file(), f"{key}: {host_file} does not exist"
        assert host_file.parent == HARDWARE / "config"
