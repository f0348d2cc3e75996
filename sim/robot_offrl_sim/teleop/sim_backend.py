"""The robosuite back end of the record loop: a SimEnv stepped by a teleop device.

Scenes come from the task's regions with seeds derived exactly like ``sim collect`` derives them, and
episodes carry the same attributes as collected ones (initial condition, seed, success step), so a
teleop demo can be replayed or compared with generated data. The schema is the sim package's own
``SimEnv.store_schema()``: recorded and collected episodes can share one store.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robot_offrl.data import StoreSchema
from robot_offrl.record.backend import DeviceReset, RecordBackend, Step, StepOutcome
from robot_offrl_sim.collect import collect_seed
from robot_offrl_sim.rollout import EpisodeResult, episode_attrs
from robot_offrl_sim.tasks import Obs, SimEnv
from robot_offrl_sim.teleop.devices import TeleopDevice


class Viewer:
    """An OpenCV window showing one camera, so the operator sees what the arm does (needs a display)."""

    def __init__(self, env: SimEnv, camera: str, size: int = 384) -> None:
        import cv2

        self._cv2 = cv2
        self.env, self.camera, self.size = env, camera, size
        self._title = f"robot-offrl record: {env.spec.name} ({camera})"
        cv2.namedWindow(self._title, cv2.WINDOW_AUTOSIZE)

    def show(self) -> None:
        frame = self.env.frame(self.camera, self.size)
        self._cv2.imshow(self._title, self._cv2.cvtColor(frame, self._cv2.COLOR_RGB2BGR))
        self._cv2.waitKey(1)

    def close(self) -> None:
        self._cv2.destroyWindow(self._title)


class SimBackend(RecordBackend):
    """``RecordBackend`` over a SimEnv; scene k uses ``collect_seed(seed, source, k)`` in ``region``."""

    def __init__(
        self,
        env: SimEnv,
        device: TeleopDevice,
        region: str = "narrow",
        seed: int = 0,
        source: str = "teleop",
        viewer: Viewer | None = None,
    ) -> None:
        env.spec.region(region)  # unknown region: error now, not at the first reset
        self.env = env
        self.device = device
        self.region = region
        self.seed = int(seed)
        self.source = source
        self.viewer = viewer
        self.control_rate_hz = float(env.spec.control_freq)
        self.max_steps: int | None = env.horizon
        self._scene = -1
        self._episode_seed = 0
        self._obs: Obs | None = None
        self._steps = 0
        self._success_step: int | None = None

    def schema(self) -> StoreSchema:
        if self._obs is None:  # observation shapes need one reset; scene numbering is left alone
            self.env.reset(0, region=self.region)
        return self.env.store_schema()

    def new_scene(self) -> None:
        self._scene += 1
        self._episode_seed = collect_seed(self.seed, self.source, self._scene)
        self._obs = self.env.reset(self._episode_seed, region=self.region)
        self._refresh_view()

    def replay_scene(self) -> None:
        self._obs = self.env.reset(self._episode_seed, initial_condition=self.env.initial_condition)
        self._refresh_view()

    def begin_episode(self) -> None:
        self.device.start()
        self._steps = 0
        self._success_step = None

    def step(self) -> StepOutcome:
        assert self._obs is not None, "new_scene() first"
        obs = self._obs
        action = self.device.action(obs)
        if action is None:
            return DeviceReset()
        self._obs = self.env.step(action)
        self._steps += 1
        if self._success_step is None and self.env.success():
            self._success_step = self._steps
        self._refresh_view()
        return Step(obs=obs, action=np.asarray(action, dtype=np.float32))

    def detected_success(self) -> bool | None:
        return self._success_step is not None

    def episode_attrs(self) -> dict[str, Any]:
        ic = self.env.initial_condition
        result = EpisodeResult(
            success=self._success_step is not None,
            steps=self._steps,
            seed=self._episode_seed,
            initial_condition=ic.to_dict() if ic is not None else {},
            perturbations=[],
            success_step=self._success_step,
            final_object_pose=[round(v, 6) for v in self.env.object_pose()],
        )
        return episode_attrs(result, self.env.spec.name, device=self.device.name, region=self.region)

    def idle(self) -> None:
        self._refresh_view()

    def _refresh_view(self) -> None:
        if self.viewer is not None:
            self.viewer.show()

    def close(self) -> None:
        self.device.close()
        if self.viewer is not None:
            self.viewer.close()
        self.env.close()
