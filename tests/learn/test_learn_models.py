"""Building blocks: GroupNorm trunk, crops, encoder layout, denoisers, Lipschitz head, averaging, expectiles."""

from __future__ import annotations

import pytest
import torch

from robot_offrl.algos.averaging import ema_decay, soft_update
from robot_offrl.algos.iql import expectile_loss, masked_mean
from robot_offrl.models.critics import Critic
from robot_offrl.models.denoisers import ConditionalUnet1D, MLPResNetDenoiser
from robot_offrl.models.encoders import CameraEncoder, CropRandomizer, ObsEncoder
from robot_offrl.models.lipschitz import LipschitzHead
from robot_offrl.models.obs_info import ObsInfo


def test_camera_trunk_uses_groupnorm_and_keypoints():
    cam = CameraEncoder((32, 32, 3), crop=(28, 28), num_keypoints=6, feature_dim=10)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in cam.modules())
    assert sum(isinstance(m, torch.nn.GroupNorm) for m in cam.modules()) == 20  # every ResNet-18 norm layer
    frames = torch.randint(0, 256, (5, 32, 32, 3), dtype=torch.uint8)
    assert cam(frames).shape == (5, 10)


def test_random_crop_in_training_centre_crop_at_inference():
    crop = CropRandomizer((6, 6), (4, 4))
    images = torch.arange(36, dtype=torch.float32).reshape(1, 1, 6, 6).repeat(64, 2, 1, 1)
    crop.eval()
    torch.testing.assert_close(crop(images), images[:, :, 1:5, 1:5])
    crop.train()
    out = crop(images)
    corners = {int(v) for v in out[:, 0, 0, 0]}
    assert len(corners) > 3  # different windows for different samples
    for n in range(64):
        top, left = divmod(int(out[n, 0, 0, 0]), 6)
        torch.testing.assert_close(out[n], images[n, :, top : top + 4, left : left + 4])


def test_encoder_layout_is_independent_of_dict_order():
    info = ObsInfo(lowdim={"b": 2, "a": 3}, obs_horizon=2, pred_horizon=4)
    enc = ObsEncoder(info)
    assert enc.output_dim == 10
    a, b = torch.randn(4, 2, 3), torch.randn(4, 2, 2)
    torch.testing.assert_close(enc({"a": a, "b": b}), enc({"b": b, "a": a}))
    torch.testing.assert_close(enc({"a": a, "b": b})[:, :3], a[:, 0])


@pytest.mark.parametrize("horizon", [4, 8, 16])
def test_denoisers_map_chunks_to_chunks(horizon):
    x, cond = torch.randn(3, horizon, 5), torch.randn(3, 12)
    unet = ConditionalUnet1D(5, 12, down_dims=(8, 16, 32), kernel_size=3, n_groups=4, timestep_embed_dim=8)
    mlp = MLPResNetDenoiser(5, horizon, 12, hidden_dim=16, num_blocks=2, timestep_embed_dim=8)
    for net in (unet, mlp):
        out = net(x, torch.tensor([0, 50, 99]), cond)
        assert out.shape == x.shape
        assert not torch.allclose(out, net(x, 10, cond))  # the diffusion step matters
        assert not torch.allclose(out, net(x, torch.tensor([0, 50, 99]), cond + 1))  # so does the condition


def test_lipschitz_head_spectral_norm_and_penalty():
    torch.manual_seed(0)
    exact = LipschitzHead(8, 6, "exact")
    power = LipschitzHead(8, 6, "power")
    power.linear.load_state_dict(exact.linear.state_dict())
    truth = torch.linalg.svdvals(exact.linear.weight).max()
    torch.testing.assert_close(exact.spectral_norm(), truth)
    for _ in range(50):  # the persistent vector converges across calls
        estimate = power.spectral_norm()
    torch.testing.assert_close(estimate, truth, rtol=1e-3, atol=1e-4)
    opt = torch.optim.SGD(exact.parameters(), lr=0.1)
    before = float(truth.detach())
    for _ in range(5):
        opt.zero_grad()
        exact.penalty(0.1).backward()
        opt.step()
    assert float(exact.spectral_norm().detach()) < before


def test_critic_min_q_over_candidates():
    info = ObsInfo(lowdim={"pos": 2}, obs_horizon=1, pred_horizon=2)
    critic = Critic(ObsEncoder(info), action_dim=2, hidden_dim=16, num_layers=2)
    obs = {"pos": torch.randn(3, 1, 2)}
    actions = torch.randn(3, 4, 2)
    q = critic.min_q(obs, actions)
    q1, q2 = critic.twin(obs, actions[:, 2])
    torch.testing.assert_close(q[:, 2], torch.minimum(q1, q2))


def test_averaging_and_expectiles():
    assert ema_decay(1, 0.75, 0.9999, 0.0, 1.0, 0) == 0.0
    decays = [ema_decay(s, 0.75, 0.9999, 0.0, 1.0, 0) for s in (2, 10, 100, 10**9)]
    assert decays == sorted(decays) and decays[-1] == 0.9999
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    wa = a.weight.detach().clone()
    soft_update(a, b, 0.25)
    torch.testing.assert_close(a.weight, 0.75 * wa + 0.25 * b.weight)
    diff = torch.tensor([1.0, -1.0])
    torch.testing.assert_close(expectile_loss(diff, 0.9), torch.tensor([0.9, 0.1]))
    assert masked_mean(torch.tensor([1.0, 5.0]), torch.tensor([True, False])) == 1.0
    assert masked_mean(torch.tensor([1.0, 5.0]), torch.tensor([False, False])) == 0.0
