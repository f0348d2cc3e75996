"""Reset play: put the object back into the expert's start region, send the arm home, end the episode.

This is the cheap data a lab really has between demonstrations: someone (or a script) resets the scene
by pushing or carrying the object from wherever it ended up into the region the expert starts from.
It is directed (every episode ends near expert start states, which is what stitching needs), it never
performs the task, and it ends as soon as the arm is home instead of idling to the horizon.

Lift resets by planar pushing (closed fingers, hand at the cube's height) or, when the hand could not
get behind the cube (far from the robot) and in a share of episodes, by sliding it: grasp, drag it
along the table, let go. Lifting a cube even 2 cm would already count as a Lift success. Can
resets by a low carry inside the start bin (the can tips over under a push, and the bin walls leave
no room to get behind it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robot_offrl_sim.experts import make_expert
from robot_offrl_sim.experts.base import CLOSE, OPEN, Obs, servo
from robot_offrl_sim.spec import TaskSpec

# How each scripted-expert family resets its object; tasks without an entry cannot reset-play.
RESET_PRIMITIVES = {"lift": ("push", "slide"), "can": ("carry",)}
CARRY_HEIGHT = {"carry": 0.06, "slide": 0.0}  # object raised this far while carried / slid
SLIDE_SHARE = 0.3  # Lift: share of resets that slide even where a push would reach
REACH_X = 0.15  # world x beyond which the Panda cannot hold its hand down behind the object to push
HOLDING_GAP = 0.01  # finger opening (m) above which the closed fingers hold something
PUSH_CONTACT = 0.04  # hand centre behind the object's centre while pushing (cube half-size + fingers)
PUSH_LEAD = 0.03  # the hand is servoed this far ahead of itself along the push line (push speed)
PUSH_BELOW = 0.005  # push with the hand this far below the object's centre (never on its top edge)
DONE_TOL = 0.012  # object centre within this of the goal: reset done
INSIDE_MARGIN = 0.01  # ... or this far inside the narrow region's edges
GOAL_MARGIN = 0.5  # goals are drawn from the inner half of the narrow region
MAX_REAPPROACH = 4
STEP_BUDGET = 120  # after this many steps the reset is abandoned and the arm goes home
HOME_RESERVE = 40  # steps kept for leaving and going home when the horizon is short


class ResetPlayPolicy:
    """A closed-loop stage machine: push, slide or carry the object to a goal in the narrow region, go home.

    `finished` turns true once the arm is back at its start pose; the rollout runner ends the episode
    there. `report` (shared with the episode's generator_details) says whether the object got there.
    """

    def __init__(
        self, spec: TaskSpec, rng: np.random.Generator, report: dict[str, Any] | None = None, horizon: int | None = None
    ) -> None:
        family = spec.expert or spec.name
        if family not in RESET_PRIMITIVES:
            from robot_offrl.errors import ConfigError

            raise ConfigError(f"task {spec.name!r} has no reset-play primitive; reset play exists for {sorted(RESET_PRIMITIVES)}")
        self.spec, self.rng = spec, rng
        self.budget = max(20, min(STEP_BUDGET, int(horizon or spec.horizon) - HOME_RESERVE))
        self.primitives = RESET_PRIMITIVES[family]
        self.slide_draw = float(rng.random())
        self.expert = make_expert(spec)
        self.report = report if report is not None else {}
        reg = spec.narrow
        cx, cy = sum(reg.x) / 2.0, sum(reg.y) / 2.0
        hx, hy = GOAL_MARGIN * (reg.x[1] - reg.x[0]) / 2.0, GOAL_MARGIN * (reg.y[1] - reg.y[0]) / 2.0
        gx, gy = cx + float(rng.uniform(-hx, hx)), cy + float(rng.uniform(-hy, hy))
        self.goal = np.array([spec.origin[0] + gx, spec.origin[1] + gy])
        self.report.update(goal=[round(gx, 4), round(gy, 4)])
        self.reset()

    def reset(self) -> None:
        self.expert.reset()
        self.stage = "start"
        self.stage_steps = 0
        self.steps = 0
        self.reapproaches = 0
        self.finished = False
        self.primitive = self.primitives[0]
        self.home: np.ndarray | None = None
        self.home_yaw = 0.0
        self.yaw = 0.0
        self.z0 = 0.0
        self.anchor: np.ndarray | None = None
        self.grasp_z = 0.0
        self.grip_offset = np.zeros(2)
        self.report.update(reached=False, reapproaches=0)

    # ---------------------------------------------------------------- helpers
    def _obj(self, obs: Obs) -> np.ndarray:
        i = self.spec.object_pos_index
        return np.asarray(obs["object"][i : i + 3], dtype=np.float64)

    def _to_goal(self, obs: Obs) -> np.ndarray:
        return self.goal - self._obj(obs)[:2]

    def _go(self, stage: str) -> None:
        self.stage, self.stage_steps, self.anchor = stage, 0, None

    def _anchor(self, obs: Obs) -> np.ndarray:
        """Where the hand was when the current stage began (stages that move relative to it)."""
        if self.anchor is None:
            self.anchor = np.asarray(obs["robot0_eef_pos"], dtype=np.float64).copy()
        return self.anchor

    def _reached(self, obs: Obs, pos: np.ndarray, tol: float = 0.015) -> bool:
        return float(np.linalg.norm(obs["robot0_eef_pos"] - pos)) < tol

    def _servo(self, obs: Obs, pos: np.ndarray, gripper: float, max_action: float = 0.8) -> np.ndarray:
        return servo(obs, pos, self.yaw, gripper, max_action=max_action).astype(np.float32)

    def _arrived(self, obs: Obs) -> bool:
        """At the goal, or well inside the narrow region (an operator stops there too)."""
        obj = self._obj(obs)
        x, y, reg = obj[0] - self.spec.origin[0], obj[1] - self.spec.origin[1], self.spec.narrow
        inside = reg.x[0] + INSIDE_MARGIN <= x <= reg.x[1] - INSIDE_MARGIN and reg.y[0] + INSIDE_MARGIN <= y <= reg.y[1] - INSIDE_MARGIN
        arrived = inside or float(np.linalg.norm(self._to_goal(obs))) < DONE_TOL
        if arrived:
            self.report["reached"] = True
        return arrived

    # ---------------------------------------------------------------- policy interface
    def act(self, obs: Obs) -> np.ndarray:
        if self.home is None:
            self.home = np.asarray(obs["robot0_eef_pos"], dtype=np.float64).copy()
            self.yaw = self.home_yaw = self.expert.gripper_yaw(obs)
            self.z0 = float(self._obj(obs)[2])
            self.primitive = self._choose(obs)
            self.report["primitive"] = self.primitive
            self._go("approach" if self.primitive == "push" else "grasp")
        self.steps += 1
        self.stage_steps += 1
        if self.steps > self.budget and self.stage not in ("release", "leave", "up", "home"):
            # Give up, as an operator would: set down what is held, else back off; then go home.
            self._go("release" if self.stage in ("raise", "carry", "set_down") else "leave")
        a = getattr(self, f"_stage_{self.stage}")(obs)
        self.report["reapproaches"] = self.reapproaches
        return a

    def _choose(self, obs: Obs) -> str:
        if self.primitives != ("push", "slide"):
            return self.primitives[0]
        behind = self._obj(obs)[:2] - (PUSH_CONTACT + 0.03) * self._push_dir(obs)
        return "slide" if behind[0] > REACH_X or self.slide_draw < SLIDE_SHARE else "push"

    # ---------------------------------------------------------------- push (Lift)
    def _push_dir(self, obs: Obs) -> np.ndarray:
        d = self._to_goal(obs)
        return d / (float(np.linalg.norm(d)) + 1e-9)

    def _stage_approach(self, obs: Obs) -> np.ndarray:
        if self._arrived(obs):
            return self._leave(obs)
        obj, d = self._obj(obs), self._push_dir(obs)
        pre = np.array([*(obj[:2] - (PUSH_CONTACT + 0.03) * d), self.z0 + 0.08])
        if self._reached(obs, pre, 0.02) or self.stage_steps > 60:
            self._go("lower")
        return self._servo(obs, pre, CLOSE)

    def _stage_lower(self, obs: Obs) -> np.ndarray:
        obj, d = self._obj(obs), self._push_dir(obs)
        if self.stage_steps == 1:
            self.z0 = float(obj[2]) - PUSH_BELOW  # the object has settled by now
        low = np.array([*(obj[:2] - (PUSH_CONTACT + 0.03) * d), self.z0])
        if self._reached(obs, low, 0.015) or self.stage_steps > 40:
            self._go("push")
        return self._servo(obs, low, CLOSE)

    def _stage_push(self, obs: Obs) -> np.ndarray:
        if self._arrived(obs):
            return self._leave(obs)
        obj, d = self._obj(obs), self._push_dir(obs)
        rel = obs["robot0_eef_pos"][:2] - obj[:2]
        along = float(rel @ d)
        lateral = float(np.linalg.norm(rel - along * d))
        if (along > -0.015 or lateral > 0.02) and self.stage_steps > 5:
            # The hand slipped beside or past the object: lift off and come at it again from behind.
            self.reapproaches += 1
            self._go("leave" if self.reapproaches > MAX_REAPPROACH else "hop")
            return self._stage_hop(obs) if self.stage == "hop" else self._stage_leave(obs)
        # Step forward along the push line from where the hand is, and pull back onto the line behind
        # the object: servoing at a point fixed to the object would slide the hand round its side.
        dist = float(np.linalg.norm(self._to_goal(obs)))
        side = rel - along * d
        target = np.array([*(obs["robot0_eef_pos"][:2] + min(PUSH_LEAD, dist) * d - side), self.z0])
        return self._servo(obs, target, CLOSE, max_action=0.8)

    def _stage_hop(self, obs: Obs) -> np.ndarray:
        target = self._anchor(obs) + np.array([0.0, 0.0, 0.06])
        if self._reached(obs, target, 0.015) or self.stage_steps > 20:
            self._go("approach")
        return self._servo(obs, target, CLOSE)

    # ---------------------------------------------------------------- carry (Can) and slide (Lift)
    def _stage_grasp(self, obs: Obs) -> np.ndarray:
        if self.expert.phase == "lift":  # the expert has closed its fingers: carry it ourselves
            self.yaw = self.expert.gripper_yaw(obs)
            self.grasp_z = float(obs["robot0_eef_pos"][2])
            self._go("raise")
            return self._stage_raise(obs)
        if self.stage_steps > 120:
            self._go("release")
            return self._stage_release(obs)
        return np.asarray(self.expert.act(obs), dtype=np.float32)

    def _stage_raise(self, obs: Obs) -> np.ndarray:
        target = self._anchor(obs) + np.array([0.0, 0.0, CARRY_HEIGHT[self.primitive]])
        if self._reached(obs, target, 0.008) or self.stage_steps > 40:
            gap = float(obs["robot0_gripper_qpos"][0] - obs["robot0_gripper_qpos"][1])
            self.grip_offset = self._obj(obs)[:2] - obs["robot0_eef_pos"][:2]
            self._go("carry" if gap > HOLDING_GAP else "release")  # a missed grasp: let go and go home
        return self._servo(obs, target, CLOSE)

    def _stage_carry(self, obs: Obs) -> np.ndarray:
        target = np.array([*(self.goal - self.grip_offset), self.grasp_z + CARRY_HEIGHT[self.primitive]])
        if float(np.linalg.norm(self._obj(obs)[:2] - self.goal)) < 0.5 * DONE_TOL or self.stage_steps > 60:
            self._go("set_down")
        return self._servo(obs, target, CLOSE, max_action=0.6)

    def _stage_set_down(self, obs: Obs) -> np.ndarray:
        target = np.array([*(self.goal - self.grip_offset), self.grasp_z + 0.005])
        if self._reached(obs, target, 0.01) or self.stage_steps > 30:
            self._go("release")
        return self._servo(obs, target, CLOSE, max_action=0.5)

    def _stage_release(self, obs: Obs) -> np.ndarray:
        if self.stage_steps >= 10:
            self._arrived(obs)
            self._go("up")
        return self._servo(obs, obs["robot0_eef_pos"], OPEN)

    # ---------------------------------------------------------------- leave and return home
    def _leave(self, obs: Obs) -> np.ndarray:
        self._go("leave")
        return self._stage_leave(obs)

    def _stage_leave(self, obs: Obs) -> np.ndarray:
        # Back off away from the object before rising, so the fingers do not drag it along.
        anchor = self._anchor(obs)
        away = anchor[:2] - self._obj(obs)[:2]
        away = away / (float(np.linalg.norm(away)) + 1e-9)
        target = np.array([*(anchor[:2] + 0.03 * away), anchor[2]])
        if self._reached(obs, target, 0.01) or self.stage_steps > 15:
            self._go("up")
        return self._servo(obs, target, CLOSE if self.primitive == "push" else OPEN, max_action=0.4)

    def _stage_up(self, obs: Obs) -> np.ndarray:
        target = self._anchor(obs) + np.array([0.0, 0.0, 0.08])
        if self._reached(obs, target, 0.015) or self.stage_steps > 25:
            self._go("home")
        return self._servo(obs, target, OPEN)

    def _stage_home(self, obs: Obs) -> np.ndarray:
        assert self.home is not None
        self.yaw = self.home_yaw
        if self._reached(obs, self.home, 0.02) or self.stage_steps > 60:
            self.finished = True
        return self._servo(obs, self.home, OPEN)
