"""Freshness of every required observation stream.

A policy fed a frozen camera frame keeps acting on a world that no longer exists; the node
asks the watchdog before every inference and on its own faster timer, and holds the arm the
moment any required input is older than its bound.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

from robot_offrl.errors import ConfigError


@dataclass(frozen=True)
class StaleInput:
    """One input that is too old (``age_s`` is None when it never arrived)."""

    name: str
    age_s: float | None
    timeout_s: float

    def __str__(self) -> str:
        if self.age_s is None:
            return f"{self.name}: nothing received yet"
        return f"{self.name}: {self.age_s * 1000:.0f} ms old (limit {self.timeout_s * 1000:.0f} ms)"


class Watchdog:
    """Last time stamp per named input, compared against per-input timeouts. Thread-safe."""

    def __init__(self, timeouts_s: Mapping[str, float]) -> None:
        for name, timeout in timeouts_s.items():
            if not timeout > 0:
                raise ConfigError(f"observation timeout for {name!r} must be > 0 s, got {timeout}")
        self._timeouts = dict(timeouts_s)
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def inputs(self) -> list[str]:
        return list(self._timeouts)

    def feed(self, name: str, stamp_s: float) -> None:
        """Record that ``name`` produced data stamped ``stamp_s``; unknown names are a bug."""
        if name not in self._timeouts:
            raise KeyError(f"watchdog has no input named {name!r}; known: {list(self._timeouts)}")
        with self._lock:
            self._last[name] = max(stamp_s, self._last.get(name, stamp_s))

    def age(self, name: str, now_s: float) -> float | None:
        with self._lock:
            last = self._last.get(name)
        return None if last is None else now_s - last

    def ages(self, now_s: float) -> dict[str, float | None]:
        return {name: self.age(name, now_s) for name in self._timeouts}

    def stale(self, now_s: float) -> list[StaleInput]:
        """Inputs that never arrived or are older than their timeout at ``now_s``."""
        out = []
        for name, timeout in self._timeouts.items():
            age = self.age(name, now_s)
            if age is None or age > timeout:
                out.append(StaleInput(name, age, timeout))
        return out

    def reset(self) -> None:
        """Forget everything, so that activation waits for genuinely new data."""
        with self._lock:
            self._last.clear()
