"""Camera observations: configured shape, upright (flipped from OpenGL), not blank. A few steps only."""

from __future__ import annotations

import numpy as np
import pytest

from robot_offrl_sim.tasks import make_env


@pytest.mark.render
def test_cameras_have_configured_shape_and_content() -> None:
    env = make_env("lift", cameras=["agentview", "robot0_eye_in_hand"], camera_size=64)
    try:
        obs = env.reset(0)
        obs = env.step(np.zeros(7))
        raw = env._last_raw
        for cam in ("agentview", "robot0_eye_in_hand"):
            img = obs[f"{cam}_image"]
            assert img.shape == (64, 64, 3) and img.dtype == np.uint8
            assert img.std() > 10.0, f"{cam} image looks blank"
            np.testing.assert_array_equal(img, raw[f"{cam}_image"][::-1])  # OpenGL rows flipped upright
        assert set(env.store_schema().obs_keys) == set(obs)
        frame = env.frame("agentview", 48)
        assert frame.shape == (48, 48, 3) and frame.std() > 10.0
    finally:
        env.close()
