import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from onbeat.choreographers import codes_sampler
from onbeat.core.errors import OnbeatError
from onbeat.core.music import FEATURE_DIM, MASK_COLUMN_GROUP
from onbeat.core.representation import POSE_DIM
from onbeat.core.styles import STYLES
from onbeat.models.checkpoint import load_model, save_model
from onbeat.models.codes import LOWER_COLUMNS, UPPER_COLUMNS, Codes

STATS = {"pose_mean": np.zeros(POSE_DIM, np.float32), "pose_std": np.ones(POSE_DIM, np.float32),
         "music_mean": np.zeros(FEATURE_DIM, np.float32), "music_std": np.ones(FEATURE_DIM, np.float32)}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and the CI machine's cores are shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(**overrides):
    torch.manual_seed(0)
    return Codes.from_config({**Codes.PRESETS["tiny"], **overrides}, STATS)


def wave_batch(size=8, frames=64, seed=0):
    """Windows of one smooth sine movement (each column its own amplitude), at random phases, with music."""
    rng = np.random.default_rng(seed)
    t = np.arange(frames)[None, :, None] / 30
    phase = rng.uniform(0, 2 * np.pi, (size, 1, 1))
    amplitude = np.random.default_rng(99).uniform(-1.5, 1.5, POSE_DIM)
    motion = (amplitude * np.sin(2 * np.pi * t + phase)).astype(np.float32)
    music = rng.normal(size=(size, frames, FEATURE_DIM)).astype(np.float32)
    return {"motion": torch.from_numpy(motion), "music": torch.from_numpy(music), "has_music": torch.ones(size)}


def test_body_halves_cover_every_column_once():
    assert sorted(LOWER_COLUMNS + UPPER_COLUMNS) == list(range(POSE_DIM))
    assert {0, 1, 2, 147, 148, 149, 150} <= set(LOWER_COLUMNS)  # root and foot contacts go with the legs


@pytest.mark.slow
def test_vq_stage_learns_to_reconstruct():
    model = tiny()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = wave_batch()
    first = None
    for _ in range(60):
        loss, logs = model.loss(batch)
        first = first if first is not None else logs["rec"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert logs["rec"] < 0.5 * first
    assert logs["usage"] > 0.2  # codes stay in use (dead ones are restarted)


def test_dead_codes_are_restarted_near_the_data():
    model = tiny()
    codebook = model.vq.codebooks["upper"]
    model.train()
    z = torch.randn(4, 16, codebook.embedding.shape[1]) + 5.0  # far from the initial codebook
    codebook(z)  # first call initialises from the batch
    codebook.embedding[0] = -100.0
    codebook.cluster_size[0] = 0.0
    codebook(z)
    assert codebook.embedding[0].mean() > 3.0


def test_gpt_step_with_ring_cache_matches_teacher_forcing_beyond_the_context():
    model = tiny().eval()
    cfg = model.cfg
    steps = 3 * cfg.context + 1
    up, down = (torch.randint(0, cfg.codebook_size, (1, steps)) for _ in range(2))
    music = torch.randn(1, steps, cfg.rate, FEATURE_DIM)
    step = model.gpt_step_module()
    with torch.no_grad():
        full_up, full_down = model.gpt(up, down, music)
        kv = model.empty_cache()
        for t in range(steps):
            logits_up, logits_down, kv = step(up[:, t], down[:, t], music[:, t], kv, torch.tensor([t]))
            assert torch.allclose(logits_up, full_up[:, t], atol=1e-5)
            assert torch.allclose(logits_down, full_down[:, t], atol=1e-5)


def test_streaming_decoder_matches_whole_sequence_decoding():
    model = tiny().eval()
    cfg = model.cfg
    steps, window, frames = 30, cfg.decode_context + cfg.slice_codes - 1, cfg.rate * cfg.slice_codes
    up, down = (torch.randint(0, cfg.codebook_size, (1, steps)) for _ in range(2))
    decoder = model.decoder_module()
    with torch.no_grad():
        whole = model.vq.decode(up, down) * model.pose_std + model.pose_mean
        for end in range(window, steps + 1):
            rows = decoder(up[:, end - window:end], down[:, end - window:end])
            assert torch.allclose(rows[0], whole[0, cfg.rate * end - frames:cfg.rate * end], atol=1e-5)


def test_sample_code_respects_top_k_temperature_and_loop_guard():
    rng = np.random.default_rng(0)
    logits = np.array([5.0, 4.0, 0.0, -1.0])
    draws = [codes_sampler.sample_code(logits, rng, top_k=2) for _ in range(200)]
    assert set(draws) == {0, 1}
    assert {codes_sampler.sample_code(logits, rng, temperature=1e-4) for _ in range(20)} == {0}
    guarded = [codes_sampler.sample_code(logits, rng, temperature=1e-4, recent=[0, 0], repeat_penalty=1.0)
               for _ in range(20)]
    assert set(guarded) == {1}


def test_generate_streams_whole_code_steps_deterministically():
    model = tiny()
    music = np.random.default_rng(0).normal(size=(52, FEATURE_DIM)).astype(np.float32)
    rows = model.generate(music, seed=3)
    assert model.metadata()["slice_frames"] == 8
    assert rows.shape == (48, POSE_DIM) and np.isfinite(rows).all()
    assert np.array_equal(rows, model.generate(music, seed=3))
    assert not np.array_equal(rows, model.generate(music, seed=4))
    # the sampler's stream gives the same rows slice by slice
    gpt_step, decode = model.sampler_callables()
    stream = codes_sampler.CodesStream(gpt_step, decode, model.metadata(), seed=3)
    sliced = np.concatenate([stream.next_slice(music[i:i + 8]) for i in range(0, 48, 8)])
    assert np.allclose(sliced, rows)


def test_low_pass_smooths_across_slices():
    model = tiny()
    music = np.random.default_rng(0).normal(size=(48, FEATURE_DIM)).astype(np.float32)
    raw = model.generate(music, seed=2, smoothing=0.0)
    smooth = model.generate(music, seed=2, smoothing=0.5)
    expected = raw.copy()
    for t in range(1, len(raw)):
        expected[t] = 0.5 * expected[t - 1] + 0.5 * raw[t]
    assert np.allclose(smooth, expected, atol=1e-5)
    assert np.abs(np.diff(smooth, axis=0)).mean() < np.abs(np.diff(raw, axis=0)).mean()


def test_metadata_is_json_and_describes_the_graphs():
    model = tiny()
    meta = json.loads(json.dumps(model.metadata()))
    inputs = model.gpt_step_example_inputs()
    assert list(inputs) == ["prev_up", "prev_down", "music", "kv", "pos"]
    assert tuple(inputs["kv"].shape) == (meta["layers"], 2, 1, meta["heads"], meta["context"], meta["head_dim"])
    assert meta["start_token"] == meta["codebook_size"] and meta["rate"] == model.cfg.rate
    with torch.no_grad():
        pose = model.decoder_module()(**model.decoder_example_inputs())
    assert tuple(pose.shape) == (1, meta["slice_frames"], meta["pose_dim"])
    assert meta["slice_frames"] == meta["rate"] * meta["slice_codes"]


def test_checkpoint_round_trip_and_gpt_stage_freezes_the_vq(tmp_path):
    model = tiny()
    model.loss(wave_batch())  # initialise the codebooks from data
    path = tmp_path / "vq.pt"
    save_model(path, "codes", model, STATS)
    loaded = load_model(path, "codes")
    music = np.zeros((16, FEATURE_DIM), np.float32)
    assert np.array_equal(loaded.generate(music, seed=1), model.eval().generate(music, seed=1))

    gpt_stage = Codes.from_config({**Codes.PRESETS["tiny"], "stage": "gpt", "vq_checkpoint": str(path)}, STATS)
    before = {k: v.clone() for k, v in gpt_stage.vq.state_dict().items()}
    optimizer = torch.optim.AdamW(gpt_stage.parameters(), lr=1e-2)
    loss, logs = gpt_stage.loss(wave_batch())
    loss.backward()
    optimizer.step()
    assert {"ce_up", "ce_down", "acc"} <= set(logs)
    assert all(torch.equal(before[k], v) for k, v in gpt_stage.vq.state_dict().items())


def test_a_gpt_stage_checkpoint_loads_after_its_vq_checkpoint_is_gone(tmp_path):
    vq = tiny()
    vq.loss(wave_batch())
    vq_path = tmp_path / "vq.pt"
    save_model(vq_path, "codes", vq, STATS)
    gpt_stage = Codes.from_config({**Codes.PRESETS["tiny"], "stage": "gpt", "vq_checkpoint": str(vq_path)}, STATS)
    gpt_path = tmp_path / "gpt.pt"
    save_model(gpt_path, "codes", gpt_stage, STATS)
    vq_path.unlink()  # the model file holds the VQ-VAE's weights itself
    loaded = load_model(gpt_path)
    music = np.zeros((16, FEATURE_DIM), np.float32)
    assert np.array_equal(loaded.generate(music, seed=1), gpt_stage.eval().generate(music, seed=1))


def test_bad_checkpoint_is_one_clear_error(tmp_path):
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(OnbeatError, match="broken.pt"):
        load_model(path)
    with pytest.raises(OnbeatError, match="vq_checkpoint"):
        Codes.from_config({**Codes.PRESETS["tiny"], "stage": "gpt"}, STATS).loss(wave_batch())


def test_sampler_module_does_not_import_torch():
    code = "import sys, onbeat.choreographers.codes_sampler; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_a_styled_gpt_takes_style_and_mask_in_training_and_streaming():
    model = tiny(styles=len(STYLES), stage="gpt")
    for codebook in model.vq.codebooks.values():  # an untrained VQ-VAE's random codes will do here
        codebook.initialized.fill_(True)
    batch = wave_batch()
    mask = torch.ones(8, 64, 2)
    mask[4:, :, 0] = 0  # half the windows have beats only
    batch.update(music_mask=mask, style=torch.arange(8) % len(STYLES),
                 music=batch["music"] * mask[..., MASK_COLUMN_GROUP])
    loss, _ = model.loss(batch)
    loss.backward()
    assert model.gpt.style_in.weight.grad.abs().sum() > 0 and model.gpt.mask_in.weight.grad.abs().sum() > 0
    assert model.metadata()["styles"] == list(STYLES)
    inputs = model.gpt_step_example_inputs()
    assert list(inputs)[-2:] == ["music_mask", "style"]
    music = np.random.default_rng(0).normal(size=(24, FEATURE_DIM)).astype(np.float32)
    assert not np.array_equal(model.generate(music, seed=3, style="popping"), model.generate(music, seed=3))
    with pytest.raises(OnbeatError, match="unknown style"):
        model.generate(music, style="salsa")
