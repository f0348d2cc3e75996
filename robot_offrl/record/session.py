"""The record loop: one state machine for every recorder (robosuite teleop and a ROS 2 arm).

It lives in the library, below both: sim provides a ``RecordBackend`` over robosuite
(``robot_offrl_sim.teleop.sim_backend``), ROS 2 one over a real arm's topics
(``robot_offrl_ros.recorder``); neither imports the other.

A back end produces steps (observation, commanded action) at the control rate; the session decides
which of them become episodes. Steps live in an ``EpisodeBuffer`` until the operator saves, and a save
is one ``EpisodeBuffer.commit`` (the store's atomic append), so a crash or Ctrl-C at any moment keeps
every episode saved before it and never leaves half of the current one behind. This module imports
neither robosuite nor rclpy, so both recorders use exactly the same controls.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any, TextIO

from robot_offrl.data import EpisodeBuffer, EpisodeStore
from robot_offrl.data.schema import check_source
from robot_offrl.errors import ConfigError, UserError
from robot_offrl.record.backend import RecordBackend, Refused, Step
from robot_offrl.record.controls import (
    Command,
    CommandQueue,
    KeySource,
    Request,
    command_for_key,
    help_text,
)

SUCCESS_CHOICES = ("auto", "true", "false", "unknown")


class State(Enum):
    IDLE = "idle"
    RECORDING = "recording"
    SAVE_PROMPT = "save?"
    CONFIRM = "confirm?"
    DONE = "done"


@dataclass
class SessionConfig:
    """Defaults for the save prompt and loop behaviour; ``success='auto'`` trusts the back end's check."""

    expert: bool = True
    source: str = "teleop"
    success: str = "auto"
    operator: str = ""
    pace: bool = True
    status_interval_s: float = 0.2
    extra_attrs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_source(self.source, episode="(record)")
        if self.success not in SUCCESS_CHOICES:
            raise ConfigError(f"success default must be one of {SUCCESS_CHOICES}, got {self.success!r}")


@dataclass
class Status:
    """What the status line shows (and what scripted operators wait on)."""

    state: State = State.IDLE
    steps: int = 0
    refused: int = 0
    rate_hz: float = 0.0
    saved: Counter[str] = field(default_factory=Counter)
    last_event: str = ""
    pending: str = ""
    expert: bool = True
    success: bool | None = None


def format_status(status: Status) -> str:
    saved = status.saved
    total = saved["episodes"]
    parts = [
        f"[{status.state.value}]",
        f"saved {total} (expert {saved['expert']}, non-expert {saved['non_expert']}; "
        f"success {saved['success']}, failure {saved['failure']}, unknown {saved['unknown']})",
        f"steps {status.steps}",
        f"{status.rate_hz:4.1f} Hz",
    ]
    if status.refused:
        parts.append(f"refused {status.refused}")
    if status.state is State.SAVE_PROMPT:
        success = {True: "success", False: "failure", None: "unknown"}[status.success]
        parts.append(f"save as {'expert' if status.expert else 'non-expert'}, {success}? "
                     "[1] expert [2] success [Enter] save [c] back")
    elif status.pending:
        parts.append(status.pending)
    return " | ".join(parts)


class CtrlC:
    """Catch Ctrl-C as a flag, so it takes effect at a point the recorder chooses.

    Python raises KeyboardInterrupt at whatever bytecode runs when the signal lands. Inside the
    simulator that can be a numba or MuJoCo callback, which turns it into a SystemError and a
    traceback instead of the clean "interrupted" exit. In the main thread only (signals are delivered
    there). A SIGINT the parent set to ignored stays ignored.
    """

    def __init__(self) -> None:
        self.pressed = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> CtrlC:
        if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            self._previous = signal.signal(signal.SIGINT, self._note)
            self._installed = True
        return self

    def _note(self, signum: int, frame: Any) -> None:
        self.pressed = True

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def raise_if_pressed(self) -> None:
        if self.pressed:
            self.pressed = False
            raise KeyboardInterrupt


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C while an episode is committed, then deliver it: a save in progress always finishes.

    The store's append is atomic anyway; deferring just avoids throwing away an episode the operator
    already chose to keep because the interrupt landed a millisecond too early.
    """
    with CtrlC() as ctrl_c:
        yield
    ctrl_c.raise_if_pressed()


class RecordSession:
    """Drive a back end, turn key presses / service calls into episode decisions, commit whole episodes."""

    def __init__(
        self,
        backend: RecordBackend,
        store: EpisodeStore,
        config: SessionConfig,
        keys: KeySource | None = None,
        commands: CommandQueue | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.backend = backend
        self.store = store
        self.config = config
        self.keys = keys
        self.commands = commands or CommandQueue()
        self.out = out or sys.stderr
        self.buffer = EpisodeBuffer()
        self.status = Status(expert=config.expert)
        self.saved_indices: list[int] = []
        self._confirm: tuple[Command, Callable[[], str]] | None = None
        self._success_override: tuple[bool | None] | None = None  # set through a service, kept until saved
        self._episode_started = 0.0
        self._tick_times: list[float] = []
        self._last_status = 0.0
        self._live = hasattr(self.out, "isatty") and self.out.isatty()

    # ------------------------------------------------------------------ loop
    def run(self) -> list[int]:
        """Record until quit; returns the indices of the episodes saved in this session."""
        self.backend.new_scene()
        self._event(f"ready: press n to record, ? for keys ({self.store.num_episodes} episodes in {self.store.url})")
        period = 1.0 / self.backend.control_rate_hz
        next_tick = time.monotonic()
        with CtrlC() as ctrl_c:  # Ctrl-C lands between control ticks, never inside a simulator step
            try:
                while self.status.state is not State.DONE:
                    ctrl_c.raise_if_pressed()
                    self._handle_inputs()
                    if self.status.state is State.RECORDING:
                        self._record_one()
                        if self.config.pace:
                            next_tick += period
                            delay = next_tick - time.monotonic()
                            if delay > 0:
                                time.sleep(delay)
                            else:
                                next_tick = time.monotonic()  # fell behind: do not burst to catch up
                    else:
                        self.backend.idle()
                        time.sleep(0.02 if self.config.pace else 0.001)
                        next_tick = time.monotonic()
                    self._show_status()
            except KeyboardInterrupt:
                dropped = len(self.buffer)
                self.buffer.clear()
                self._event(
                    f"interrupted: {dropped} unsaved step(s) dropped; {len(self.saved_indices)} episode(s) saved "
                    f"this session are safe in {self.store.url}"
                )
                raise
            finally:
                self._end_line()
        self._event(f"done: saved {len(self.saved_indices)} episode(s) to {self.store.url}")
        return self.saved_indices

    def _record_one(self) -> None:
        limit = self.backend.max_steps
        if limit is not None and len(self.buffer) >= limit:
            self._open_save_prompt(reason=f"episode reached {limit} steps")
            return
        outcome = self.backend.step()
        if isinstance(outcome, Step):
            self.buffer.add(outcome.obs, outcome.action)
            self.status.steps = len(self.buffer)
            now = time.monotonic()
            self._tick_times.append(now)
            recent = [t for t in self._tick_times[-21:] if now - t < 2.0]
            self._tick_times = recent
            if len(recent) > 1:
                self.status.rate_hz = (len(recent) - 1) / max(recent[-1] - recent[0], 1e-9)
        elif isinstance(outcome, Refused):
            self.status.refused += 1
            self.status.pending = f"refused: {outcome.reason}"
        else:
            self._handle(Request(Command.RESET))

    # ------------------------------------------------------------------ inputs
    def _handle_inputs(self) -> None:
        for request in self.commands.drain():
            self._handle(request)
        if self.keys is not None:
            for key in self.keys.poll(self.status):
                command = command_for_key(key)
                if command is not None:
                    self._handle(Request(command))

    def _handle(self, request: Request) -> None:
        try:
            ok, message = self._dispatch(request)
        except Exception as err:  # a failed save must reach the service caller, then propagate
            if request.reply is not None:
                request.reply.put((False, str(err)))
            raise
        if message:
            self._event(message)
        if request.reply is not None:
            request.reply.put((ok, message))

    def _dispatch(self, request: Request) -> tuple[bool, str]:
        cmd, state = request.command, self.status.state
        if cmd is Command.HELP:
            self._end_line()
            print(help_text(), file=self.out, flush=True)
            return True, ""
        if cmd is Command.SET_EXPERT:
            self.status.expert = bool(request.value)
            return True, f"expert flag for the next save: {self.status.expert}"
        if cmd is Command.SET_SUCCESS:
            self._success_override = (None if request.value is None else bool(request.value),)
            self.status.success = self._success_override[0]
            return True, f"success flag for the next save: {self.status.success}"
        if state is State.CONFIRM:
            return self._answer_confirmation(cmd)
        if state is State.SAVE_PROMPT:
            return self._answer_save_prompt(request)
        if cmd is Command.START:
            if state is State.RECORDING:
                return False, "already recording; save (k) or discard (x) first"
            self._begin()
            return True, "recording"
        if cmd is Command.SAVE:
            if state is not State.RECORDING or not len(self.buffer):
                return False, "nothing to save: no steps recorded yet"
            self._open_save_prompt()
            if request.confirmed:
                return self._save()
            return True, ""
        unsaved = len(self.buffer) if state is State.RECORDING else 0
        actions: dict[Command, tuple[str, Callable[[], str]]] = {
            Command.DISCARD: ("discard", self._discard),
            Command.RERECORD: ("re-record", self._rerecord),
            Command.RESET: ("reset the scene", self._reset),
            Command.QUIT: ("quit", self._quit),
        }
        if cmd in actions:
            what, act = actions[cmd]
            if cmd in (Command.DISCARD, Command.RERECORD) and state is not State.RECORDING:
                return False, f"nothing to {what}: not recording"
            if request.confirmed or not unsaved:
                return True, act()
            self._confirm = (cmd, act)
            self.status.state = State.CONFIRM
            self.status.pending = f"{what} and drop {unsaved} step(s)? press again or Enter, c cancels"
            return True, ""
        return False, ""  # CONFIRM / CANCEL / toggles with nothing pending

    def _answer_confirmation(self, cmd: Command) -> tuple[bool, str]:
        assert self._confirm is not None
        original, act = self._confirm
        if cmd in (Command.CONFIRM, original):
            self._confirm = None
            return True, act()
        if cmd is Command.CANCEL:
            self._confirm = None
            self.status.state = State.RECORDING
            self.status.pending = ""
            return True, "cancelled; still recording"
        return False, ""

    def _answer_save_prompt(self, request: Request) -> tuple[bool, str]:
        cmd = request.command
        if cmd is Command.TOGGLE_EXPERT:
            self.status.expert = not self.status.expert
            return True, ""
        if cmd is Command.CYCLE_SUCCESS:
            order: list[bool | None] = [True, False, None]
            self.status.success = order[(order.index(self.status.success) + 1) % 3]
            return True, ""
        if cmd in (Command.CONFIRM, Command.SAVE):
            return self._save()
        if cmd is Command.CANCEL:
            limit = self.backend.max_steps
            if limit is not None and len(self.buffer) >= limit:
                return False, f"the episode is at its {limit}-step limit: save (Enter) or discard (x)"
            self.status.state = State.RECORDING
            return True, "back to recording"
        if cmd in (Command.DISCARD, Command.RERECORD, Command.RESET, Command.QUIT):
            self.status.state = State.RECORDING
            return self._dispatch(request)
        return False, f"a save prompt is open ({cmd.value} ignored): Enter saves, c goes back, x discards"

    # ------------------------------------------------------------------ episode actions
    def _begin(self) -> None:
        self.buffer.clear()
        self.backend.begin_episode()
        self.status.state = State.RECORDING
        self.status.steps = 0
        self.status.refused = 0
        self.status.pending = ""
        self._tick_times = []
        self._episode_started = time.time()

    def _open_save_prompt(self, reason: str = "") -> None:
        self.status.state = State.SAVE_PROMPT
        choice = self.config.success
        if self._success_override is not None:
            self.status.success = self._success_override[0]
        elif choice == "auto":
            self.status.success = self.backend.detected_success()
        else:
            self.status.success = {"true": True, "false": False}.get(choice)
        if reason:
            self._event(f"{reason}: save (Enter) or discard (x)")

    def _save(self) -> tuple[bool, str]:
        steps = len(self.buffer)
        attrs = {
            **self.backend.episode_attrs(),
            **self.config.extra_attrs,
            "operator": self.config.operator,
            "recorded_at": datetime.fromtimestamp(self._episode_started, timezone.utc).isoformat(),
            "duration_s": round(time.time() - self._episode_started, 3),
            "refused_steps": self.status.refused,
            "success_detected": self.backend.detected_success(),
        }
        expert, success = self.status.expert, self.status.success
        try:
            with sigint_deferred():
                index = self.buffer.commit(
                    self.store, expert=expert, source=self.config.source, success=success, attrs=attrs,
                )
        except UserError as err:  # e.g. NaN in an observation: keep the prompt so the operator can discard
            return False, f"save failed, nothing was written: {err}; discard with x"
        self.saved_indices.append(index)
        saved = self.status.saved
        saved["episodes"] += 1
        saved["expert" if expert else "non_expert"] += 1
        saved[{True: "success", False: "failure", None: "unknown"}[success]] += 1
        self._after_episode()
        self.backend.new_scene()
        flags = f"{'expert' if expert else 'non-expert'}, {self.config.source}, success={success}"
        return True, f"saved episode {index} ({steps} steps, {flags})"

    def _after_episode(self) -> None:
        self.buffer.clear()
        self.status.state = State.IDLE
        self.status.steps = 0
        self.status.pending = ""
        self.status.expert = self.config.expert
        self._success_override = None

    def _discard(self) -> str:
        dropped = len(self.buffer)
        self._after_episode()
        self.backend.new_scene()
        return f"discarded {dropped} step(s); nothing was written"

    def _rerecord(self) -> str:
        dropped = len(self.buffer)
        self._after_episode()
        self.backend.replay_scene()
        self._begin()
        return f"discarded {dropped} step(s); recording again from the same initial condition"

    def _reset(self) -> str:
        dropped = len(self.buffer)
        self._after_episode()
        self.backend.new_scene()
        return f"new scene ({dropped} unsaved step(s) dropped)" if dropped else "new scene"

    def _quit(self) -> str:
        dropped = len(self.buffer)
        self.buffer.clear()
        self.status.state = State.DONE
        return f"quit ({dropped} unsaved step(s) dropped)" if dropped else "quit"

    # ------------------------------------------------------------------ output
    def _event(self, message: str) -> None:
        self.status.last_event = message
        self._end_line()
        print(message, file=self.out, flush=True)

    def _show_status(self) -> None:
        if not self._live:
            return
        now = time.monotonic()
        if now - self._last_status < self.config.status_interval_s:
            return
        self._last_status = now
        print("\r\x1b[2K" + format_status(self.status), end="", file=self.out, flush=True)

    def _end_line(self) -> None:
        if self._live and self._last_status:
            print("\r\x1b[2K", end="", file=self.out, flush=True)
            self._last_status = 0.0


def service_handler(commands: CommandQueue, timeout_s: float = 5.0) -> Callable[[str, Any], tuple[bool, str]]:
    """Adapter for the ROS recorder's services: ``(name, value) -> (ok, message)`` through the loop.

    Service calls are confirmed requests (no prompt): calling ``~/discard`` is already deliberate.
    """

    def handle(name: str, value: Any = None) -> tuple[bool, str]:
        try:
            command = Command(name)
        except ValueError:
            return False, f"unknown command {name!r}; known: {[c.value for c in Command]}"
        return commands.call(Request(command, confirmed=True, value=value), timeout_s)

    return handle


def summarize_saved(store: EpisodeStore, indices: Sequence[int]) -> str:
    """One line for the end of a session: what this session added."""
    metas = [store.episode(i) for i in indices]
    expert = sum(m.expert for m in metas)
    steps = sum(m.length for m in metas)
    return f"{len(metas)} episode(s), {steps} steps ({expert} expert) added; store now has {store.num_episodes}"
