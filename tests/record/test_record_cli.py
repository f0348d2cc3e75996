"""`robot-offrl record` from the command line: clear errors (exit 2, no traceback) where input is missing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from robot_offrl_cli.main import main

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


def test_keyboard_on_a_headless_machine_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("PYNPUT_BACKEND", raising=False)
    code, err = run_cli(["record", "--task", "lift", "--device", "keyboard", "--out", str(tmp_path / "s.zarr")],
                        capsys)
    assert code == 2
    assert "keyboard device cannot read input here (no display: DISPLAY is not set)" in err
    assert "Traceback" not in err
    assert not (tmp_path / "s.zarr").exists()  # nothing created before the device check


def test_keyboard_with_an_unreachable_display_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DISPLAY", ":987")  # no X server there: pynput's import fails
    monkeypatch.delenv("PYNPUT_BACKEND", raising=False)
    for name in [m for m in sys.modules if m.startswith("pynput")]:
        monkeypatch.delitem(sys.modules, name)
    code, err = run_cli(["record", "--task", "lift", "--out", str(tmp_path / "s.zarr")], capsys)
    assert code == 2 and "keyboard device cannot read input here" in err and "X display" in err
    assert "Traceback" not in err


def test_spacemouse_without_hid_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("robot_offrl_sim")
    import importlib.util

    if importlib.util.find_spec("hid") is not None:
        pytest.skip("the hid library is installed here")
    code, err = run_cli(["record", "--task", "lift", "--device", "spacemouse", "--out", str(tmp_path / "s.zarr")],
                        capsys)
    assert code == 2 and "pip install hidapi" in err and "Traceback" not in err


def test_help_has_examples_and_bad_arguments_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["record", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "robot-offrl record --task lift --device keyboard" in out and "--ros --config" in out
    code, err = run_cli(["record", "--out", str(tmp_path / "s.zarr")], capsys)
    assert code == 2 and "--task is required" in err
    code, err = run_cli(["record", "--ros", "--out", str(tmp_path / "s.zarr")], capsys)
    assert code == 2 and "--ros needs --config" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("recorder_node:\n  ros__parameters:\n    control_rate: 20\n")
    code, err = run_cli(["record", "--ros", "--config", str(bad), "--out", str(tmp_path / "s.zarr")], capsys)
    assert code == 2 and "unknown recorder parameter(s) ['control_rate']" in err and str(bad) in err
    with pytest.raises(SystemExit) as exc:
        main(["record", "--task", "lift", "--source", "dreamt", "--out", str(tmp_path / "s.zarr")])
    assert exc.value.code == 2


def test_keyboard_adapter_turns_robosuite_key_events_into_the_7d_action() -> None:
    """robosuite's real Keyboard driver (pynput's dummy backend: no X here), events fed to its handlers."""
    script = textwrap.dedent("""
        import numpy as np
        from pynput.keyboard import Key, KeyCode
        from robot_offrl_sim.tasks import make_env
        from robot_offrl_sim.teleop.devices import make_device
        env = make_env("lift")
        env.reset(0)
        dev = make_device("keyboard", env.env)
        dev.start()
        kb = dev.device
        a0 = dev.action({})
        kb.on_press(Key.up)                      # -x
        kb.on_press(KeyCode.from_char(";"))      # +z
        kb.on_release(Key.space)                 # close the gripper
        a1 = dev.action({})
        a2 = dev.action({})                      # no new key: no motion, gripper stays closed
        kb.on_release(KeyCode.from_char("q"))    # robosuite's reset key
        a3 = dev.action({})
        print("A0", a0.tolist()); print("A1", a1.tolist()); print("A2", a2.tolist()); print("A3", a3)
        print("DTYPE", a1.dtype, a1.shape)
        # (no dev.close(): pynput's dummy backend cannot stop a listener it never really started)
    """)
    env = {**os.environ, "PYNPUT_BACKEND": "dummy", "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "sim"), str(ROOT / "hardware"), str(ROOT / "cli")])}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=100)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if line[:2] in ("A0", "A1", "A2", "A3", "DT"))
    assert eval(lines["A0"]) == [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0]
    assert eval(lines["A1"]) == [-1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert eval(lines["A2"]) == [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert lines["A3"] == "None"
    assert lines["DTYPE"] == "float32 (7,)"
