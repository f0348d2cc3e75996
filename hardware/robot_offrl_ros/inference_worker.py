"""Runs the policy's control step in a thread of its own, off the ROS executor.

Inference takes tens of milliseconds to seconds; if it ran inside an executor callback the
e-stop, watchdog and services would wait behind it (or need rclpy's multi-threaded executor,
which costs a core at sensor rates, see ``spinning``). The control timer only *requests* a step;
requests that arrive while a step is running collapse into one, like a timer skipping ticks it
missed, so a slow policy never builds a backlog of stale steps.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class InferenceWorker:
    """Calls ``step`` once per :meth:`request`, coalescing requests made while it is busy."""

    def __init__(self, step: Callable[[], None], name: str = "policy-inference") -> None:
        self._step = step
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def request(self) -> None:
        if not self._closed:
            self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._closed:
                return
            self._step()  # the step handles its own exceptions: it must hold the arm, not die here

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop after the step in progress (if any) finishes; later requests are ignored."""
        self._closed = True
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout_s)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()
