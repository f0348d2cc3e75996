"""The mistakes a newcomer makes in the first hour end in one clear line and exit status 2, not a traceback:
a wrong store path, a GPU asked for where none is, a machine without ROS 2, a recorder without a display.
Each runs the real command (a child process where the exit status and stderr are the point).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ship_support import PYTHONPATH, REPO, ROS_MODULES, hide_ros, make_lift_store, run_cli

from robot_offrl_cli.main import main


def _one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def lift_store(tmp_path: Path) -> Path:
    return make_lift_store(tmp_path / "lift.zarr")


# --------------------------------------------------------------------------- wrong store path
def test_data_info_on_a_missing_path(tmp_path):
    missing = tmp_path / "nope.zarr"
    proc = run_cli(["data", "info", str(missing)])
    _one_line_error(proc, str(missing), "no such file or directory", "check the path")
    assert not missing.exists(), "a read command must not create the store"


def test_data_info_on_a_folder_that_is_not_a_store(tmp_path):
    proc = run_cli(["data", "info", str(tmp_path)])
    _one_line_error(proc, "no episode store here")


def test_train_on_a_missing_store(tmp_path, capsys):
    assert main(["train", f"data={tmp_path / 'nope.zarr'}", f"out={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert "nope.zarr: no such file or directory" in err
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(("url", "package"), [("s3://bucket/lift.zarr", "s3fs"), ("gs://bucket/lift.zarr", "gcsfs")])
def test_object_store_url_without_its_fsspec_backend(url: str, package: str):
    if importlib.util.find_spec(package) is not None:
        pytest.skip(f"{package} is installed here")
    _one_line_error(run_cli(["data", "info", url]), url, package)


# --------------------------------------------------------------------------- no GPU
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_train_on_cuda_without_a_gpu(lift_store, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", f"data={lift_store}", f"out={out}", "trainer.device=cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("robot-offrl train: error: device 'cuda' asked for but no CUDA GPU is visible; "
                   "use trainer.device=auto or cpu")
    assert not (out / "checkpoints").exists()


# --------------------------------------------------------------------------- no ROS 2
def test_the_library_and_cli_never_import_ros():
    code = (
        "import sys\n"
        "from robot_offrl_cli.main import build_parser\n"
        "build_parser()\n"
        "import robot_offrl.data, robot_offrl.train.loop, robot_offrl.runtime, robot_offrl_sim.sweep\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {ROS_MODULES!r}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": PYTHONPATH})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_robot_offrl_works_on_a_machine_without_ros(lift_store, tmp_path):
    hidden = str(hide_ros(tmp_path / "no_ros"))
    proc = run_cli(["data", "info", str(lift_store)], pythonpath_prefix=hidden)
    assert proc.returncode == 0, proc.stderr
    assert "4" in proc.stdout


def test_record_ros_without_ros_says_what_to_install(tmp_path):
    hidden = str(hide_ros(tmp_path / "no_ros"))
    out = tmp_path / "arm.zarr"
    proc = run_cli(["record", "--ros", "--config", str(REPO / "hardware/config/record.yaml"), "--out", str(out)],
                   pythonpath_prefix=hidden)
    _one_line_error(proc, "--ros needs rclpy", "install the ros extra or source your ROS 2 workspace")
    assert not out.exists()


def _import_without_ros(module: str, tmp_path: Path, call_main: bool = False) -> subprocess.CompletedProcess[str]:
    hidden = str(hide_ros(tmp_path / "no_ros"))
    code = f"import {module}" if not call_main else (
        f"import sys\nfrom {module} import main\nsys.exit(main())")  # what the console script does
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": hidden + os.pathsep + PYTHONPATH})


@pytest.mark.parametrize("module", ["image_codec", "safety", "scheduling", "watchdog", "params", "policy",
                                    "observations"])
def test_pure_ros_package_parts_import_without_ros(module, tmp_path):
    """robot_offrl_ros/__init__.py promises these work (and are testable) without ROS."""
    proc = _import_without_ros(f"robot_offrl_ros.{module}", tmp_path)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("node", ["policy_node", "camera_node"])
def test_node_entry_points_without_ros_print_one_line(node, tmp_path):
    """The console scripts (robot_offrl_ros.entry) say what to do instead of a traceback."""
    hidden = str(hide_ros(tmp_path / "no_ros"))
    code = f"import sys\nfrom robot_offrl_ros.entry import {node}\nsys.exit({node}())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": hidden + os.pathsep + PYTHONPATH})
    assert proc.returncode != 0
    assert "rclpy" in proc.stderr and "source /opt/ros" in proc.stderr
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- no display
def test_keyboard_recorder_without_a_display(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    out = tmp_path / "teleop.zarr"
    proc = subprocess.run(
        [sys.executable, "-m", "robot_offrl_cli.main", "record", "--task", "lift", "--device", "keyboard",
         "--out", str(out)], capture_output=True, text=True, timeout=120, cwd=REPO,
        env={**env, "PYTHONPATH": PYTHONPATH})
    _one_line_error(proc, "no display", "DISPLAY")
    assert not out.exists()
