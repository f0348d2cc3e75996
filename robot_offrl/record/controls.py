"""Episode-control key bindings and the sources that deliver them to the record loop.

Keys were chosen so that none collides with robosuite's own keyboard teleop keys (arrows, ``.`` ``;``
``e r y h o p`` ``space`` ``b s = q``): robosuite's listener and ours hear the same key presses, so a
shared key would move the arm *and* save the episode. Keys that throw work away (discard, re-record,
reset or quit with unsaved steps) ask for confirmation: press the same key again or Enter; ``c`` cancels.

=======  =================================================================================
key      what it does
=======  =================================================================================
``n``    start recording an episode from the current scene
``k``    keep: stop and open the save prompt (``1`` toggles expert, ``2`` cycles success /
         failure / unknown, Enter saves, ``c`` goes back to recording)
``x``    discard the episode being recorded (asks for confirmation)
``z``    re-record: discard and start again from the same initial condition (confirm)
``g``    reset: new scene (next initial condition); discards unsaved steps (confirm)
``Q``    quit (shift-q); asks for confirmation when unsaved steps would be lost; Ctrl-C also quits
``?``    print these bindings
=======  =================================================================================
"""

from __future__ import annotations

import os
import queue
import select
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, TextIO

from robot_offrl.errors import UserError


class Command(Enum):
    START = "start"
    SAVE = "save"
    DISCARD = "discard"
    RERECORD = "rerecord"
    RESET = "reset"
    QUIT = "quit"
    CONFIRM = "confirm"
    CANCEL = "cancel"
    TOGGLE_EXPERT = "toggle_expert"
    CYCLE_SUCCESS = "cycle_success"
    SET_EXPERT = "set_expert"
    SET_SUCCESS = "set_success"
    HELP = "help"


@dataclass(frozen=True)
class Binding:
    key: str
    command: Command
    description: str


ENTER = "\n"
BINDINGS: tuple[Binding, ...] = (
    Binding("n", Command.START, "start recording an episode from the current scene"),
    Binding("k", Command.SAVE, "keep: open the save prompt (then 1 / 2 / Enter)"),
    Binding("x", Command.DISCARD, "discard the episode being recorded (confirm)"),
    Binding("z", Command.RERECORD, "re-record from the same initial condition (confirm)"),
    Binding("g", Command.RESET, "reset to a new scene; unsaved steps are dropped (confirm)"),
    Binding("Q", Command.QUIT, "quit (shift-q; Ctrl-C also quits, saved episodes are kept)"),
    Binding("1", Command.TOGGLE_EXPERT, "save prompt: toggle the expert flag"),
    Binding("2", Command.CYCLE_SUCCESS, "save prompt: cycle success -> failure -> unknown"),
    Binding(ENTER, Command.CONFIRM, "confirm (save, or the pending discard/reset/quit)"),
    Binding("c", Command.CANCEL, "cancel the save prompt or the pending confirmation"),
    Binding("?", Command.HELP, "print these bindings"),
)
KEYMAP: dict[str, Command] = {b.key: b.command for b in BINDINGS}
# robosuite's keyboard device listens to these; a session key must never be one of them.
ROBOSUITE_KEYS = frozenset(".;eryhopbsq= ")


def command_for_key(key: str) -> Command | None:
    """Terminals send Enter as \\r or \\n; everything unbound (arm motion keys) is ignored."""
    if key in ("\r", "\n"):
        return Command.CONFIRM
    return KEYMAP.get(key)


def help_text() -> str:
    names = {ENTER: "Enter"}
    return "\n".join(f"  {names.get(b.key, b.key):<6} {b.description}" for b in BINDINGS)


@dataclass
class Request:
    """One command for the record loop; ``reply`` (when given) receives ``(ok, message)`` once handled.

    ``confirmed`` skips the interactive confirmation / save prompt: a ROS service call is already a
    deliberate act, a key press may be a slip.
    """

    command: Command
    confirmed: bool = False
    value: Any = None
    reply: queue.Queue[tuple[bool, str]] | None = field(default=None, repr=False)


class CommandQueue:
    """Thread-safe mailbox: ROS service callbacks and key listeners post, the record loop drains."""

    def __init__(self) -> None:
        self._q: queue.Queue[Request] = queue.Queue()

    def post(self, request: Request) -> None:
        self._q.put(request)

    def call(self, request: Request, timeout: float) -> tuple[bool, str]:
        """Post and wait for the loop's answer (used by ROS services to report what really happened)."""
        request.reply = queue.Queue(maxsize=1)
        self._q.put(request)
        try:
            return request.reply.get(timeout=timeout)
        except queue.Empty:
            return False, f"the record loop did not answer within {timeout:.1f} s"

    def drain(self) -> list[Request]:
        out: list[Request] = []
        while True:
            try:
                out.append(self._q.get_nowait())
            except queue.Empty:
                return out


class KeySource(Protocol):
    """Anything that yields pressed keys; ``status`` lets scripted sources wait for the loop."""

    def poll(self, status: Any) -> Sequence[str]: ...

    def close(self) -> None: ...


class TerminalKeys:
    """Single key presses from a TTY (cbreak mode, no echo), read without blocking the loop.

    The terminal is restored on close and at interpreter exit paths through the context manager,
    so Ctrl-C never leaves the operator's shell without echo.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        import termios
        import tty

        self._stream = stream or sys.stdin
        self._fd = self._stream.fileno()
        if not os.isatty(self._fd):
            raise UserError("terminal keys need an interactive terminal (stdin is not a TTY)")
        self._saved = termios.tcgetattr(self._fd)
        tty.setcbreak(self._fd)

    def poll(self, status: Any = None) -> list[str]:
        keys: list[str] = []
        while select.select([self._fd], [], [], 0)[0]:
            data = os.read(self._fd, 64)
            if not data:
                break
            text = data.decode(errors="ignore")
            # Escape sequences (arrow keys typed into the terminal) are arm motion, not commands.
            keys.extend(ch for ch in _strip_escapes(text))
        return keys

    def close(self) -> None:
        import termios

        if self._saved is not None:
            termios.tcsetattr(self._fd, termios.TCSADRAIN, self._saved)
            self._saved = None


def _strip_escapes(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\x1b":
            i += 1
            if i < len(text) and text[i] in "[O":
                i += 1
                while i < len(text) and not text[i].isalpha() and text[i] != "~":
                    i += 1
            i += 1
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


class ListenerKeys:
    """Key presses from pynput (the same global listener robosuite's devices use).

    With a display, the operator looks at the viewer window, not the terminal, so session keys are
    taken wherever focus is, exactly like robosuite's own motion keys.
    """

    def __init__(self) -> None:
        from pynput.keyboard import Key, Listener  # needs an X display; callers check first

        self._enter = Key.enter
        self._keys: queue.Queue[str] = queue.Queue()
        self._listener = Listener(on_release=self._on_release)
        self._listener.start()

    def _on_release(self, key: Any) -> None:
        if key == self._enter:
            self._keys.put(ENTER)
        elif getattr(key, "char", None):
            self._keys.put(key.char)

    def poll(self, status: Any = None) -> list[str]:
        out: list[str] = []
        while True:
            try:
                out.append(self._keys.get_nowait())
            except queue.Empty:
                return out

    def close(self) -> None:
        self._listener.stop()


@dataclass(frozen=True)
class WaitSteps:
    """Scripted operator: wait until the episode being recorded has this many steps."""

    steps: int


@dataclass(frozen=True)
class WaitFor:
    """Scripted operator: wait until ``predicate(status)`` holds (e.g. a confirmation is pending)."""

    predicate: Callable[[Any], bool]


class ScriptExhaustedError(RuntimeError):
    """The script ended but the loop still asks for keys: the test's script is wrong, not the loop."""


class ScriptedKeys:
    """A scripted operator for tests and demos: keys, waits on the loop's status, and callbacks.

    Items: a key string (sent on the next poll), ``WaitSteps(n)`` (hold until the current episode has
    ``n`` steps), ``WaitFor(predicate)``, or a callable (run once when reached, e.g. to tell a parent
    process it may interrupt). Polling past the end raises instead of leaving the loop waiting forever.
    """

    def __init__(self, script: Sequence[str | WaitSteps | WaitFor | Callable[[], None]]) -> None:
        self._script = list(script)
        self._pos = 0
        self._lock = threading.Lock()

    @property
    def done(self) -> bool:
        return self._pos >= len(self._script)

    def poll(self, status: Any) -> list[str]:
        """One key per call, as a person presses them; waits and callbacks are passed in the same call."""
        keys: list[str] = []
        with self._lock:
            if self.done:
                raise ScriptExhaustedError(
                    f"scripted keys ran out while the loop is {status.state.value!r} with {status.steps} steps "
                    f"(last event: {status.last_event!r})"
                )
            while self._pos < len(self._script):
                item = self._script[self._pos]
                if isinstance(item, WaitSteps | WaitFor):
                    ready = status.steps >= item.steps if isinstance(item, WaitSteps) else item.predicate(status)
                    if not ready:
                        break
                    self._pos += 1
                    continue
                self._pos += 1
                if callable(item):
                    item()
                    continue
                keys.append(item)
                break  # one key per poll, as a person would press them
        return keys

    def close(self) -> None:
        return None


@contextmanager
def open_terminal_keys(enabled: bool) -> Iterator[TerminalKeys | None]:
    """Terminal keys when asked for and stdin is a TTY; None otherwise (services or a listener drive)."""
    if not enabled or not sys.stdin.isatty():
        yield None
        return
    keys = TerminalKeys()
    try:
        yield keys
    finally:
        keys.close()
