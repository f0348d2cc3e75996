"""The policy node's inference thread: requests made while a step runs collapse into one."""

from __future__ import annotations

import threading
import time

from robot_offrl_ros.inference_worker import InferenceWorker


def _wait(predicate, timeout: float = 10.0) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return bool(predicate())


def test_requests_during_a_slow_step_collapse_into_one_more_step() -> None:
    started, release = threading.Event(), threading.Event()
    calls: list[float] = []

    def step() -> None:
        calls.append(time.monotonic())
        started.set()
        release.wait(timeout=10)

    worker = InferenceWorker(step)
    try:
        worker.request()
        assert started.wait(timeout=10)
        for _ in range(20):  # twenty control ticks while inference is still busy
            worker.request()
        release.set()
        assert _wait(lambda: len(calls) == 2)
        time.sleep(0.2)
        assert len(calls) == 2  # no backlog of stale steps
    finally:
        release.set()
        worker.close()
    assert not worker.alive


def test_close_waits_for_the_running_step_and_ignores_later_requests() -> None:
    finished: list[bool] = []
    started = threading.Event()

    def step() -> None:
        started.set()
        time.sleep(0.2)
        finished.append(True)

    worker = InferenceWorker(step)
    worker.request()
    assert started.wait(timeout=10)
    worker.close()
    assert finished == [True] and not worker.alive
    worker.request()
    time.sleep(0.1)
    assert finished == [True]
