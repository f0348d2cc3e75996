"""Child process for the SIGINT test: records two episodes, then keeps recording a third until interrupted.

Usage: python record_child.py STORE ACTIONS.npz. Prints READY once the third episode is under way and
the actions of the two saved episodes are in ACTIONS.npz (what the parent compares the store with).
"""

from __future__ import annotations

import os
import signal
import sys

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")

from record_support import ENTER, WaitSteps, wiggle  # noqa: E402

from robot_offrl.data import EpisodeStore  # noqa: E402
from robot_offrl.record.controls import ScriptedKeys  # noqa: E402
from robot_offrl.record.session import RecordSession, SessionConfig  # noqa: E402
from robot_offrl_sim.tasks import make_env  # noqa: E402
from robot_offrl_sim.teleop.devices import ScriptedDevice  # noqa: E402
from robot_offrl_sim.teleop.sim_backend import SimBackend  # noqa: E402


def main(store_path: str, actions_path: str) -> int:
    # A shell without job control starts background jobs with SIGINT ignored, and Python keeps an
    # ignored SIGINT ignored; an operator's terminal never does that, so restore Ctrl-C's behaviour.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    env = make_env("lift")
    device = ScriptedDevice(wiggle(11))

    def ready() -> None:
        np.savez(actions_path, ep0=np.stack(device.history[0]), ep1=np.stack(device.history[1]))
        print("READY", flush=True)

    keys = ScriptedKeys(["n", WaitSteps(8), "k", ENTER, "n", WaitSteps(5), "k", ENTER,
                         "n", WaitSteps(10), ready, WaitSteps(10**9)])
    backend = SimBackend(env, device)
    store = EpisodeStore.open(store_path, mode="a", schema=backend.schema())
    session = RecordSession(backend, store, SessionConfig(pace=True), keys=keys, out=sys.stderr)
    try:
        session.run()
    except KeyboardInterrupt:
        return 130
    finally:
        backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
