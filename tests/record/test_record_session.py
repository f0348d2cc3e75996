"""The record loop on a real robosuite Lift env, driven by a ScriptedDevice and a scripted operator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from record_support import ENTER, WaitSteps, sim_session, wiggle

from robot_offrl.data import EpisodeStore
from robot_offrl.data.validate import find_problems
from robot_offrl.errors import ConfigError, UserError
from robot_offrl.record.controls import Command, ScriptExhaustedError, WaitFor, help_text
from robot_offrl.record.session import SessionConfig, State, Status, format_status
from robot_offrl_sim.collect import collect
from robot_offrl_sim.experts import make_expert
from robot_offrl_sim.teleop.devices import DeviceError, ScriptedDevice

pytestmark = pytest.mark.timeout(120)


def test_script_running_out_is_an_error_not_a_hang(record_env: Any, tmp_path: Path) -> None:
    session, store = sim_session(record_env, ScriptedDevice(wiggle(5)), ["n", WaitSteps(3), "x"],
                                 str(tmp_path / "rec.zarr"))
    with pytest.raises(ScriptExhaustedError, match="ran out while the loop is 'confirm\\?'"):
        session.run()
    assert store.num_episodes == 0


def test_scripted_device_records_a_real_lift_demo_with_chosen_flags(record_env: Any, tmp_path: Path) -> None:
    device = ScriptedDevice(make_expert("lift"))
    script = [
        "n", WaitSteps(60), "k",
        "1",          # toggle expert: the CLI default (expert) -> non-expert
        "2", "2",     # success cycles: detected success -> failure -> unknown
        ENTER,
        "n", WaitSteps(60), "k", ENTER,   # second episode: defaults (expert, detected success)
        "Q",
    ]
    session, store = sim_session(record_env, device, script, str(tmp_path / "rec.zarr"), operator="ana")
    saved = session.run()
    assert saved == [0, 1]
    store = EpisodeStore.open(str(tmp_path / "rec.zarr"))
    assert find_problems(store) == []
    first, second = store.read_episode(0), store.read_episode(1)
    # Exactly the actions the device produced, step for step, bit for bit.
    np.testing.assert_array_equal(first.actions, np.stack(device.history[0]))
    np.testing.assert_array_equal(second.actions, np.stack(device.history[1]))
    assert (first.meta.expert, first.meta.success, first.meta.source) == (False, None, "teleop")
    assert (second.meta.expert, second.meta.success) == (True, True)
    attrs = second.meta.attrs
    assert attrs["success_detected"] is True and attrs["success_step"] is not None
    assert attrs["operator"] == "ana" and attrs["device"] == "scripted" and attrs["task"] == "lift"
    assert attrs["initial_condition"]["region"] == "narrow"
    # The observation stored at step 0 is the scene's initial observation (before the first action).
    assert first.obs["robot0_eef_pos"].shape == (60, 3)


def test_recorded_store_takes_collected_episodes_too(record_env: Any, tmp_path: Path) -> None:
    """Same task -> same schema as `sim collect` (the sim package's schema builder is reused)."""
    path = str(tmp_path / "mixed.zarr")
    session, recorded = sim_session(record_env, ScriptedDevice(wiggle(0)), ["n", WaitSteps(5), "k", ENTER, "Q"], path)
    session.run()
    recorded.close()  # one writer at a time: the recorder hands the store over
    collect("lift", "expert", 1, path, env=record_env, seed=1)  # raises if the schemas differed
    store = EpisodeStore.open(path)
    assert [m.source for m in store.episodes] == ["teleop", "scripted"]
    assert find_problems(store) == []


def test_discard_and_rerecord_leave_no_trace(record_env: Any, tmp_path: Path) -> None:
    device = ScriptedDevice(wiggle(1))
    script = [
        "n", WaitSteps(7), "k", ENTER,               # saved: episode 0 (history[0])
        "n", WaitSteps(9), "x", "c",                 # discard asked, then cancelled: still recording
        WaitSteps(12), "x", "x",                     # discard confirmed (history[1] thrown away)
        "n", WaitSteps(5), "z", ENTER,               # re-record confirmed (history[2] thrown away)
        WaitSteps(6), "k", ENTER,                    # saved: episode 1 (history[3])
        "Q",
    ]
    path = str(tmp_path / "rec.zarr")
    session, _ = sim_session(record_env, device, script, path)
    session.run()
    assert [len(h) for h in device.history] == [7, 12, 5, 6]
    store = EpisodeStore.open(path)
    assert store.num_episodes == 2
    assert store.num_steps == 7 + 6 == store.action_array().shape[0]
    assert store.uncommitted_steps == 0 and find_problems(store) == []
    np.testing.assert_array_equal(store.read_episode(0).actions, np.stack(device.history[0]))
    np.testing.assert_array_equal(store.read_episode(1).actions, np.stack(device.history[3]))
    # Re-recording restarts from the discarded attempt's initial condition; a discard moves to a new scene.
    ic_rerecorded = store.episodes[1].attrs["initial_condition"]
    assert ic_rerecorded != store.episodes[0].attrs["initial_condition"]
    assert "discarded 5 step(s); recording again" in session.out.getvalue()


def test_rerecord_replays_the_same_initial_observation(record_env: Any, tmp_path: Path) -> None:
    device = ScriptedDevice(wiggle(2))
    script = ["n", WaitSteps(4), "k", ENTER, "n", WaitSteps(4), "z", "z", WaitSteps(4), "k", ENTER, "Q"]
    session, store = sim_session(record_env, device, script, str(tmp_path / "rec.zarr"))
    session.run()
    # Episode 1 was re-recorded: its first observation equals the start of the scene it replaced, which
    # differs from episode 0's scene (a new one after each save).
    ep0, ep1 = store.read_episode(0), store.read_episode(1)
    assert not np.allclose(ep0.obs["object"][0], ep1.obs["object"][0])
    assert ep1.meta.attrs["initial_condition"]["seed"] == ep1.meta.attrs["seed"]


def test_device_reset_and_horizon_open_the_right_prompts(record_env: Any, tmp_path: Path) -> None:
    # The device asks for a reset after 6 actions: the loop asks to confirm dropping them.
    device = ScriptedDevice(wiggle(3), reset_after=6)
    asked = WaitFor(lambda status: status.pending.startswith("reset the scene and drop 6"))
    session, store = sim_session(record_env, device, ["n", asked, ENTER, "Q"], str(tmp_path / "a.zarr"))
    session.run()
    assert store.num_episodes == 0 and "new scene (6 unsaved step(s) dropped)" in session.out.getvalue()

    # At the horizon the save prompt opens by itself; "back to recording" is refused there.
    record_env.horizon = 10
    try:
        device = ScriptedDevice(wiggle(4))
        at_limit = WaitFor(lambda status: status.state is State.SAVE_PROMPT)
        session, store = sim_session(record_env, device, ["n", at_limit, "c", ENTER, "Q"],
                                     str(tmp_path / "b.zarr"))
        session.run()
    finally:
        record_env.horizon = record_env.spec.horizon
    assert store.num_episodes == 1 and store.episodes[0].length == 10
    assert "episode reached 10 steps" in session.out.getvalue()


def test_bad_device_output_is_a_clear_error(record_env: Any, tmp_path: Path) -> None:
    device = ScriptedDevice([[0.0] * 7, [np.nan] + [0.0] * 6])
    session, store = sim_session(record_env, device, ["n", WaitSteps(10**6)], str(tmp_path / "rec.zarr"))
    with pytest.raises(DeviceError, match="non-finite action"):
        session.run()
    assert store.num_episodes == 0
    wrong = ScriptedDevice([[0.0] * 3])
    with pytest.raises(DeviceError, match="before start"):
        wrong.action({})
    wrong.start()
    with pytest.raises(DeviceError, match=r"shape \(3,\)"):
        wrong.action({})
    short = ScriptedDevice([[0.0] * 7])
    short.start()
    short.action({})
    with pytest.raises(DeviceError, match="ran out of actions after 1"):
        short.action({})
    assert issubclass(DeviceError, UserError)


def test_session_config_and_status_line() -> None:
    with pytest.raises(UserError, match="source"):
        SessionConfig(source="dreamt")
    with pytest.raises(ConfigError, match="success default"):
        SessionConfig(success="maybe")
    status = Status(state=State.RECORDING, steps=42, rate_hz=19.7)
    status.saved.update(episodes=3, expert=2, non_expert=1, success=1, failure=1, unknown=1)
    line = format_status(status)
    assert "[recording]" in line and "steps 42" in line and "19.7 Hz" in line
    assert "saved 3 (expert 2, non-expert 1; success 1, failure 1, unknown 1)" in line
    # Every bound command is documented, and no session key is one of robosuite's motion keys.
    text = help_text()
    for key in ("n", "k", "x", "z", "g", "Q", "Enter"):
        assert f"  {key}" in text
    from robot_offrl.record.controls import BINDINGS, ROBOSUITE_KEYS

    assert not {b.key for b in BINDINGS} & ROBOSUITE_KEYS
    assert {b.command for b in BINDINGS} >= {Command.START, Command.SAVE, Command.DISCARD, Command.QUIT}
