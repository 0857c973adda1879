import subprocess
import sys

import numpy as np
import pytest
import torch

from onbeat.choreographers import badm_sampler as sampler
from onbeat.core.motion import Motion
from onbeat.core.music import FEATURE_DIM, FEATURE_NAMES, MASK_COLUMN_GROUP
from onbeat.core.representation import CONTACT_SLICE, POSE_DIM, decode, encode
from onbeat.core.skeleton import NUM_JOINTS
from onbeat.core.styles import STYLES
from onbeat.models.badm import BADM

S = 4
STATS = {"pose_mean": np.zeros(POSE_DIM), "pose_std": np.ones(POSE_DIM),
         "music_mean": np.zeros(FEATURE_DIM), "music_std": np.ones(FEATURE_DIM)}


def tiny_model():
    torch.manual_seed(0)
    return BADM.from_config(BADM.PRESETS["tiny"], STATS)


def step_inputs(batch=2):
    g = torch.Generator().manual_seed(1)
    pose = lambda: torch.randn(batch, S, POSE_DIM, generator=g)  # noqa: E731
    return (pose(), torch.rand(batch, generator=g), pose(), pose(), torch.randn(batch, 2 * S, FEATURE_DIM, generator=g),
            torch.zeros(batch, S, POSE_DIM), torch.zeros(batch, S))


def test_step_module_maps_plain_tensors_to_both_clean_slices():
    model = tiny_model()
    x0, next_x0 = model.denoiser(*step_inputs())
    assert x0.shape == next_x0.shape == (2, S, POSE_DIM)
    meta = model.metadata()
    assert meta["slice_frames"] == S and meta["pose_dim"] == POSE_DIM and meta["feature_names"] == list(FEATURE_NAMES)
    assert len(meta["pose_mean"]) == POSE_DIM and meta["fps"] == 30


def test_every_conditioning_input_changes_the_prediction():
    step = tiny_model().denoiser
    base = step_inputs()
    reference = step(*base)[0]
    key_pose, key_mask = torch.ones(2, S, POSE_DIM), torch.zeros(2, S)
    key_mask[:, 1] = 1
    changed = {"t": 1, "context": 2, "next_noisy": 3, "music": 4}
    for name, index in changed.items():
        inputs = list(base)
        inputs[index] = inputs[index] + 0.5
        assert not torch.allclose(step(*inputs)[0], reference), name
    assert not torch.allclose(step(*base[:5], key_pose, key_mask)[0], reference)
    silent = list(base)
    silent[4] = torch.zeros_like(base[4])  # all-zero music rows are "no music"
    assert torch.isfinite(step(*silent)[0]).all()


def test_sampler_with_an_oracle_denoiser_lands_on_the_oracle_pose():
    rng = np.random.default_rng(0)
    start, velocity = rng.standard_normal(POSE_DIM), 0.1 * rng.standard_normal(POSE_DIM)
    target = (start + np.arange(1, S + 1)[:, None] * velocity).astype(np.float32)  # continues the context below
    calls = []

    def oracle(noisy, t, context, next_noisy, music, key_pose, key_mask):
        calls.append(float(t[0]))
        return target[None], target[None]
    state = sampler.StreamState.start(S, POSE_DIM, seed=0)
    state.context = (start + np.arange(-S + 1, 1)[:, None] * velocity).astype(np.float32)
    first = sampler.sample_slice(oracle, state, np.zeros((2 * S, FEATURE_DIM)), steps=4)
    np.testing.assert_allclose(first, target, atol=1e-5)
    assert calls == [1.0, 0.75, 0.5, 0.25]
    np.testing.assert_array_equal(state.context, first)
    # The next slice is handed over half-denoised: at level MID around the oracle's prediction.
    alpha = sampler.alpha_bar(sampler.MID)
    residual = (state.next_noisy - np.sqrt(alpha) * target) / np.sqrt(1 - alpha)
    assert 0.8 < residual.std() < 1.2


def test_generate_is_the_slice_loop_on_padded_music_denormalized():
    music = np.random.default_rng(1).standard_normal((10, FEATURE_DIM)).astype(np.float32)
    seen = []

    def denoise(noisy, t, context, next_noisy, music_rows, key_pose, key_mask):
        seen.append(music_rows[0])
        return np.tanh(noisy + context), np.tanh(next_noisy)
    mean, std = np.full(POSE_DIM, 2.0), np.full(POSE_DIM, 3.0)
    dance = sampler.generate(denoise, music, 7, S, mean, std, steps=2)
    state = sampler.StreamState.start(S, POSE_DIM, 7)
    padded = np.concatenate([music, np.repeat(music[-1:], 2, axis=0)])
    by_hand = [sampler.sample_slice(denoise, state, padded[k * S:(k + 2) * S], 2) for k in range(3)]
    assert dance.shape == (10, POSE_DIM)
    np.testing.assert_allclose(dance, np.concatenate(by_hand)[:10] * 3 + 2, atol=1e-5)
    np.testing.assert_array_equal(seen[-1][-1], music[-1])  # the look-ahead past the end holds the last row


def test_join_smoothing_removes_the_jump_and_fades_out():
    context = np.tile(np.linspace(0, 1, S)[:, None], (1, POSE_DIM)).astype(np.float32)
    jumped = np.full((S, POSE_DIM), 5.0, np.float32)
    smoothed = sampler.smooth_join(context, jumped)
    expected_first = 2 * context[-1] - context[-2]
    np.testing.assert_allclose(smoothed[0, :CONTACT_SLICE.start], expected_first[:CONTACT_SLICE.start], atol=1e-6)
    np.testing.assert_array_equal(smoothed[:, CONTACT_SLICE], jumped[:, CONTACT_SLICE])
    steps = np.abs(np.diff(smoothed[:, 0]))
    assert steps.max() < 5.0 / 2 and abs(smoothed[-1, 0] - 5.0) < abs(smoothed[0, 0] - 5.0)


def test_sampler_imports_no_torch():
    code = "import sys, onbeat.choreographers.badm_sampler; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_torch_forward_kinematics_matches_the_numpy_decode():
    frames = 12
    t = np.arange(frames) / 30.0
    aa = 0.4 * np.sin(3 * t[:, None, None] + np.arange(NUM_JOINTS * 3).reshape(1, NUM_JOINTS, 3))
    aa[:, 0] = np.stack([0.2 * np.sin(4 * t), 0 * t, 0 * t], 1)  # root pitches, no turning: heading stays 0
    root = np.stack([0.3 * t, 0.9 + 0.02 * t, 0.5 * t ** 2], 1)
    rows = encode(Motion.from_axis_angle(30.0, root, aa))
    expected = decode(rows, 30.0).positions()
    got = tiny_model().positions(torch.from_numpy(rows)[None])[0].numpy()
    assert np.abs(got - expected).max() < 1e-4


def test_loss_trains_every_part_and_beat_term_prefers_stillness_on_beats():
    model = tiny_model()
    batch = {"motion": torch.randn(4, 24, POSE_DIM) * 0.1, "music": torch.randn(4, 24, FEATURE_DIM),
             "has_music": torch.ones(4)}
    loss, logs = model.loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and set(logs) >= {"x0", "next", "velocity", "contact", "beat"}
    assert all(p.grad is not None for p in model.parameters())

    frames = 30
    phase = (np.arange(frames) % 10) / 10  # a beat every 10 frames
    music = np.zeros((1, frames, FEATURE_DIM), np.float32)
    music[..., FEATURE_NAMES.index("beat_phase_sin")] = np.sin(2 * np.pi * phase)
    music[..., FEATURE_NAMES.index("beat_phase_cos")] = np.cos(2 * np.pi * phase)
    distance = np.minimum(phase, 1 - phase)
    on_beats = np.cumsum(0.1 + np.exp(-(distance / 0.1) ** 2))  # fast at beats
    off_beats = np.cumsum(0.1 + 1 - np.exp(-(distance / 0.1) ** 2))  # fast between beats
    scores = []
    for path in (on_beats, off_beats):
        positions = torch.zeros(1, frames, NUM_JOINTS, 3)
        positions[..., 0] = torch.tensor(path, dtype=torch.float32)[None, :, None]
        scores.append(float(BADM.beat_alignment(positions, torch.from_numpy(music), torch.ones(1))))
    assert scores[1] < scores[0]


@pytest.mark.slow
def test_generation_is_continuous_and_deterministic_per_seed():
    model = tiny_model()
    music = np.random.default_rng(0).standard_normal((40, FEATURE_DIM)).astype(np.float32)
    a, b, c = model.generate(music, seed=1), model.generate(music, seed=1), model.generate(music, seed=2)
    assert a.shape == (40, POSE_DIM) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def styled_batch(size=4, frames=24):
    """Windows with their style ids and music masks: some with a song, some with beats only, some with neither."""
    g = torch.Generator().manual_seed(2)
    mask = torch.zeros(size, frames, 2)
    mask[0] = 1.0
    mask[1, :, 1] = 1.0
    return {"motion": torch.randn(size, frames, POSE_DIM, generator=g) * 0.1,
            "music": torch.randn(size, frames, FEATURE_DIM, generator=g) * mask[..., MASK_COLUMN_GROUP],
            "music_mask": mask, "has_music": mask[:, 0, 0], "style": torch.arange(size) % len(STYLES)}


def test_a_styled_model_takes_style_and_mask_and_trains_them():
    torch.manual_seed(0)
    model = BADM.from_config({**BADM.PRESETS["tiny"], "styles": len(STYLES)}, STATS)
    step, base = model.denoiser, step_inputs()
    full = torch.ones(2, 2 * S, 2)
    reference = step(*base, full, torch.zeros(2, dtype=torch.long))[0]
    assert not torch.allclose(step(*base, full, torch.full((2,), STYLES.index("krump")))[0], reference)
    beats_only = full.clone()
    beats_only[..., 0] = 0  # the same rows, but their audio columns declared missing
    assert not torch.allclose(step(*base, beats_only, torch.zeros(2, dtype=torch.long))[0], reference)
    # left out, the mask is the live one (every non-zero row real) and the style freestyle
    assert torch.allclose(step(*base)[0], reference)
    meta = model.metadata()
    assert meta["styles"] == list(STYLES) and meta["music_mask"] == ["audio", "beat"]
    loss, _ = model.loss(styled_batch())
    loss.backward()
    assert model.denoiser.style_in.weight.grad.abs().sum() > 0 and model.denoiser.mask_in.weight.grad.abs().sum() > 0
    music = np.random.default_rng(0).standard_normal((16, FEATURE_DIM)).astype(np.float32)
    assert not np.allclose(model.generate(music, seed=1, style="krump"), model.generate(music, seed=1))
