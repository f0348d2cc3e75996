"""Teleop input devices behind one small interface producing the 7-D OSC_POSE delta action.

robosuite's own ``Keyboard`` and ``SpaceMouse`` drivers do the device work (key handling, HID parsing,
sensitivity, axis conventions); the adapter only turns their ``input2action()`` dict into the
contract's action ``dx dy dz dax day daz gripper`` in [-1, 1]. Both drivers import pynput, which needs
an X display, and the SpaceMouse also needs the ``hid`` library and a device: each missing piece is
reported as a ``DeviceUnavailableError`` naming what to do, before the simulator is even built.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from robot_offrl.errors import UserError

ACTION_DIM = 7
DEVICES = ("keyboard", "spacemouse")


class DeviceUnavailableError(UserError):
    """The chosen input device cannot run here (no display, no HID library, nothing plugged in)."""


class DeviceError(UserError):
    """A device produced something that is not a valid action."""


class TeleopDevice(Protocol):
    """``action(obs)`` returns the next (7,) float32 action, or None when the operator asked for a reset.

    Real devices ignore ``obs``; scripted devices may use it the way an operator looks at the scene.
    """

    name: str

    def start(self) -> None: ...

    def action(self, obs: Mapping[str, np.ndarray]) -> np.ndarray | None: ...

    def close(self) -> None: ...


def check_action(action: Any, source: str) -> np.ndarray:
    """Shape and finiteness, named; values outside [-1, 1] are clipped (what the controller executes)."""
    arr = np.asarray(action, dtype=np.float32).reshape(-1)
    if arr.shape != (ACTION_DIM,):
        raise DeviceError(f"{source} produced an action of shape {arr.shape}; expected ({ACTION_DIM},)")
    if not np.all(np.isfinite(arr)):
        raise DeviceError(f"{source} produced a non-finite action {arr.tolist()}")
    return np.clip(arr, -1.0, 1.0)


def _no_display_reason() -> str | None:
    if os.environ.get("PYNPUT_BACKEND") or os.environ.get("PYNPUT_BACKEND_KEYBOARD"):
        return None  # the user picked a backend (uinput, dummy) explicitly
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        return "no display: DISPLAY is not set"
    return None


def check_device_available(kind: str) -> None:
    """Fail fast, with the fix, when ``kind`` cannot work on this machine (before building the simulator)."""
    if kind not in DEVICES:
        raise DeviceUnavailableError(f"unknown device {kind!r}; use one of {list(DEVICES)}")
    if kind == "spacemouse" and importlib.util.find_spec("hid") is None:
        raise DeviceUnavailableError(
            "the SpaceMouse needs the hid library (Python package 'hidapi'), which is not installed: "
            "pip install hidapi (and on Linux a udev rule giving your user access to the device); "
            "or record with --device keyboard"
        )
    reason = _no_display_reason()
    if reason is None:
        try:
            importlib.import_module("pynput.keyboard")
        except ImportError as err:
            reason = str(err).splitlines()[0]
    if reason is not None:
        raise DeviceUnavailableError(
            f"the {kind} device cannot read input here ({reason}). robosuite's input devices use pynput, "
            "which needs an X display: run `robot-offrl record` in a desktop session (or ssh -X), or "
            "replay scripted input in tests with robot_offrl_sim.teleop.devices.ScriptedDevice"
        )


class RobosuiteDevice:
    """Adapter over a ``robosuite.devices.Device``: its action dict -> the 7-D delta action."""

    def __init__(self, device: Any, name: str) -> None:
        self.device = device
        self.name = name

    def start(self) -> None:
        self.device.start_control()

    def action(self, obs: Mapping[str, np.ndarray]) -> np.ndarray | None:
        ac = self.device.input2action()
        if ac is None:  # robosuite's reset signal (keyboard q / SpaceMouse right button)
            return None
        arm = self.device.active_arm
        delta = np.asarray(ac[f"{arm}_delta"], dtype=np.float64).reshape(-1)
        grip = np.asarray(ac[f"{arm}_gripper"], dtype=np.float64).reshape(-1)
        # Grippers with a grasp_qpos table report joint targets; closed means above the midpoint.
        gripper = 1.0 if grip.size and float(grip[0]) > 0 else -1.0
        return check_action(np.concatenate([delta[:6], [gripper]]), self.name)

    def close(self) -> None:
        listener = getattr(self.device, "listener", None)
        if listener is not None:
            listener.stop()


def make_device(kind: str, robosuite_env: Any, pos_sensitivity: float = 1.0, rot_sensitivity: float = 1.0) -> RobosuiteDevice:
    """Open robosuite's Keyboard or SpaceMouse on a built robosuite env."""
    check_device_available(kind)
    try:
        if kind == "keyboard":
            from robosuite.devices.keyboard import Keyboard

            dev = Keyboard(robosuite_env, pos_sensitivity=pos_sensitivity, rot_sensitivity=rot_sensitivity)
        else:
            from robosuite.devices.spacemouse import SpaceMouse

            dev = SpaceMouse(robosuite_env, pos_sensitivity=pos_sensitivity, rot_sensitivity=rot_sensitivity)
    except ImportError as err:
        raise DeviceUnavailableError(f"the {kind} device cannot be loaded: {str(err).splitlines()[0]}") from err
    except OSError as err:  # hid: nothing plugged in / no permission
        raise DeviceUnavailableError(
            f"no SpaceMouse could be opened ({err}); plug it in, check `lsusb` shows a 3Dconnexion device "
            "and that your user may read it (udev rule), or record with --device keyboard"
        ) from err
    return RobosuiteDevice(dev, kind)


class ScriptedDevice:
    """A device with the keyboard's interface whose actions come from a list or a policy.

    Every action handed out is kept per episode in ``history``, so a test can compare the store with
    exactly what the "operator" commanded. ``reset_after`` makes the device request a reset after that
    many actions of an episode, like robosuite's ``q`` key.
    """

    name = "scripted"

    def __init__(
        self,
        actions: Sequence[Sequence[float]] | Callable[[Mapping[str, np.ndarray]], Any] | Any,
        reset_after: int | None = None,
    ) -> None:
        self._source = actions
        self._reset_after = reset_after
        self._cursor = 0
        self.history: list[list[np.ndarray]] = []

    def start(self) -> None:
        if hasattr(self._source, "reset"):
            self._source.reset()
        self.history.append([])

    def action(self, obs: Mapping[str, np.ndarray]) -> np.ndarray | None:
        if not self.history:
            raise DeviceError("ScriptedDevice.action() called before start()")
        current = self.history[-1]
        if self._reset_after is not None and len(current) >= self._reset_after:
            return None
        if hasattr(self._source, "act"):
            raw = self._source.act(dict(obs))
        elif callable(self._source):
            raw = self._source(obs)
        else:
            if self._cursor >= len(self._source):
                raise DeviceError(f"scripted device ran out of actions after {self._cursor}")
            raw = self._source[self._cursor]
            self._cursor += 1
        act = check_action(raw, self.name)
        current.append(act.copy())
        return act

    def close(self) -> None:
        return None
