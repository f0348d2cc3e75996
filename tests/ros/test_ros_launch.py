"""The ament package, launch file and YAML files agree with the node (statically, and live when possible)."""

from __future__ import annotations

import ast
import random
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]
import yaml
from rclpy.context import Context
from rclpy.lifecycle import TransitionCallbackReturn
from ros_policy_double import ScriptedPolicy

from robot_offrl.errors import ConfigError
from robot_offrl_ros.camera_node import CAMERA_PARAMS
from robot_offrl_ros.params import PARAM_NAMES, PARAMS, parse_config
from robot_offrl_ros.policy_node import PolicyNode

pytestmark = pytest.mark.ros
ROOT = Path(__file__).resolve().parents[2]
HW = ROOT / "hardware"
LAUNCH = HW / "launch" / "policy.launch.py"
ENTRY_POINTS = {
    "policy_node": "robot_offrl_ros.entry:policy_node",
    "camera_node": "robot_offrl_ros.entry:camera_node",
    "sim_arm_node": "robot_offrl_ros.entry:sim_arm_node",
    "sim_leader_node": "robot_offrl_ros.entry:sim_leader_node",
}
# sim_arm_node has its own launch file; sim_leader_node is started by `record --ros` rehearsals and tests
POLICY_LAUNCH_EXECUTABLES = {"policy_node", "camera_node"}


def setup_py_entry_points() -> dict[str, str]:
    tree = ast.parse((HW / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    entry = next(k.value for k in call.keywords if k.arg == "entry_points")
    scripts = ast.literal_eval(entry)["console_scripts"]
    return dict(s.replace(" ", "").split("=", 1) for s in scripts)


def launch_calls() -> list[ast.Call]:
    return [n for n in ast.walk(ast.parse(LAUNCH.read_text())) if isinstance(n, ast.Call)]


def test_executables_exist_in_setup_py_and_pyproject() -> None:
    assert setup_py_entry_points() == ENTRY_POINTS
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    for name, target in ENTRY_POINTS.items():
        assert scripts[name] == target
    named = {k.value.value for c in launch_calls() for k in c.keywords if k.arg == "executable"}
    assert named == POLICY_LAUNCH_EXECUTABLES
    packages = [k.value for c in launch_calls() for k in c.keywords if k.arg == "package"]
    assert len(packages) == 2 and all(isinstance(p, ast.Name) and p.id == "PACKAGE" for p in packages)
    assert 'PACKAGE = "robot_offrl_ros"' in LAUNCH.read_text()


def test_launch_arguments_and_imports() -> None:
    declared = {}
    for call in launch_calls():
        if getattr(call.func, "id", "") == "DeclareLaunchArgument":
            default = next((k.value for k in call.keywords if k.arg == "default_value"), None)
            declared[call.args[0].value] = default.value if isinstance(default, ast.Constant) else "<expr>"
    assert {"checkpoint", "params_file", "namespace", "use_sim_time", "enable_control", "autostart",
            "start_camera"} <= set(declared)
    assert declared["enable_control"] == "false" and declared["autostart"] == "false"
    assert declared["start_camera"] == "false"
    tree = ast.parse(LAUNCH.read_text())
    modules = {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    modules |= {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert modules <= {"launch", "launch_ros"}


def test_ament_package_layout() -> None:
    assert (HW / "resource" / "robot_offrl_ros").is_file()
    root = ET.parse(HW / "package.xml").getroot()
    assert root.findtext("name") == "robot_offrl_ros"
    assert root.find("export/build_type").text == "ament_python"
    deps = {e.text for e in root.iter("exec_depend")}
    assert {"rclpy", "sensor_msgs", "trajectory_msgs", "diagnostic_msgs", "std_srvs", "launch_ros"} <= deps
    text = (HW / "setup.py").read_text()
    assert 'glob("launch/*.launch.py")' in text and 'glob("config/*.yaml")' in text
    assert "$base/lib/robot_offrl_ros" in (HW / "setup.cfg").read_text()


def yaml_params(name: str, node: str) -> dict:
    data = yaml.safe_load((HW / "config" / name).read_text())
    return data[f"/**/{node}"]["ros__parameters"]


def test_policy_yaml_lists_exactly_the_declared_parameters_each_documented() -> None:
    params = yaml_params("policy.yaml", "policy_node")
    assert list(params) == list(PARAM_NAMES)
    lines = (HW / "config" / "policy.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        key = line.strip().split(":", 1)[0]
        if line.startswith("    ") and not line.strip().startswith("#") and key in PARAM_NAMES:
            above = [ln.strip() for ln in lines[max(0, i - 3):i]]
            assert any(a.startswith("#") for a in above), f"{key} has no comment above it"
    parse_config(params)  # the shipped values are valid
    assert params["enable_control"] is False and params["autostart"] is False


def test_camera_yaml_lists_exactly_the_camera_parameters() -> None:
    assert set(yaml_params("camera.yaml", "camera_node")) == set(CAMERA_PARAMS)


def test_the_node_starts_with_the_shipped_yaml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    import rclpy

    ctx = Context()
    rclpy.init(context=ctx, domain_id=random.randint(1, 100),
               args=["--ros-args", "--params-file", str(HW / "config" / "policy.yaml")])
    try:
        node = PolicyNode(policy_factory=lambda cfg: ScriptedPolicy(), context=ctx)
        expected = yaml_params("policy.yaml", "policy_node")
        for spec in PARAMS:
            got = node._param_value(spec.name)
            want = expected[spec.name]
            if spec.kind == "double[]":
                assert list(got) == pytest.approx(want), spec.name
            elif spec.kind == "string[]":
                assert list(got) == want, spec.name
            else:
                assert got == want, spec.name
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS, node._reason
        assert node._cfg.gripper_joint_names == ("panda_finger_joint1", "panda_finger_joint2")
        node.trigger_cleanup()
        node.destroy_node()
    finally:
        ctx.try_shutdown()


def test_unknown_or_mistyped_parameters_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown parameter"):
        parse_config({"joint_name": ["a"]})
    with pytest.raises(ConfigError, match="enable_control must be bool"):
        parse_config({"enable_control": "yes"})
    with pytest.raises(ConfigError, match="output_mode"):
        parse_config({"output_mode": "velocity"})
    with pytest.raises(ConfigError, match="image_timeout_s must be > 0"):
        parse_config({"image_timeout_s": 0.0})
    with pytest.raises(ConfigError, match="gripper_joint_names is empty"):
        parse_config({"gripper_topic": "/g", "gripper_joint_names": []})
    with pytest.raises(ConfigError, match="parameter amp must be one of"):
        parse_config({"amp": "fp16"})
    assert parse_config({"amp": "bf16"}).amp == "bf16"
    with pytest.raises(ConfigError, match="parameter conv1d must be one of"):
        parse_config({"conv1d": "gemm"})
    assert parse_config({"conv1d": "native"}).conv1d == "native"
    with pytest.raises(ConfigError, match="parameter prune_after must be >= -1"):
        parse_config({"prune_after": -2})
    with pytest.raises(ConfigError, match="parameter prune_keep must be >= 0"):
        parse_config({"prune_keep": -1})
    assert parse_config({"prune_after": 0}).prune_after == 0  # 0 is "off", not "the checkpoint's"


def test_acting_parameters_reach_the_runtime_and_unset_ones_keep_the_checkpoints() -> None:
    from robot_offrl_ros.policy import load_runtime

    fixture = str(Path(__file__).resolve().parents[1] / "fixtures" / "checkpoint_v2_rise")
    kept = load_runtime(parse_config({"checkpoint": fixture})).describe()
    assert (kept["num_candidates"], kept["prune_after"], kept["prune_keep"]) == (8, 0, 4)  # as it was saved
    chosen = load_runtime(parse_config({"checkpoint": fixture, "num_candidates": 6, "prune_after": 1,
                                        "prune_keep": 2, "conv1d": "native"})).describe()
    assert (chosen["num_candidates"], chosen["prune_after"], chosen["prune_keep"], chosen["conv1d"]) == (
        6, 1, 2, "native")


def test_launch_description_builds_when_launch_ros_is_installed() -> None:
    pytest.importorskip("launch_ros")  # absent on PyPI-only machines; present on a ROS 2 install
    import importlib.util

    from launch_ros.actions import LifecycleNode

    spec = importlib.util.spec_from_file_location("policy_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    nodes = [e for e in description.entities if isinstance(e, LifecycleNode)]
    assert len(nodes) == 1
    names = {e.name for e in description.get_launch_arguments()}
    assert {"checkpoint", "params_file", "enable_control", "autostart", "start_camera"} <= names


def test_yaml_parameters_match_the_table() -> None:
    params = yaml_params("policy.yaml", "policy_node")
    for spec in PARAMS:
        value = params[spec.name]
        kind = {"bool": bool, "int": int, "double": float, "string": str, "string[]": list, "double[]": list}
        assert isinstance(value, kind[spec.kind]), f"{spec.name}: {value!r} is not {spec.kind}"
