import json
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from onbeat.choreographers.kinds import kind_named
from onbeat.commands.cli import main
from onbeat.core.motion import Motion
from onbeat.core.music import FEATURE_DIM
from onbeat.core.representation import encode
from onbeat.core.skeleton import NUM_JOINTS
from onbeat.models import dataset, train
from onbeat.models.checkpoint import load_model, read_checkpoint

TINY = {"batch_size": 8, "eval_every": 10, "eval_batches": 2, "save_every": 5, "warmup": 5, "lr": 3e-3}


def synthetic_file(path):
    """Swaying dances (with and without music) in a dataset file: enough for a few optimisation steps."""
    rng = np.random.default_rng(0)
    phases = rng.uniform(0, 6, (1, NUM_JOINTS, 3))  # one dance style: the same sway, at different tempi
    tracks = []
    for n in range(6):
        t = np.arange(150) / 30.0
        aa = 0.3 * np.sin(2 * np.pi * (1 + n / 5) * t[:, None, None] + phases)
        rows = encode(Motion.from_axis_angle(30.0, np.tile([0, 0.9, 0], (150, 1)), aa))
        music = rng.standard_normal((150, FEATURE_DIM)).astype(np.float32) * (n % 2)
        mask = np.full((150, 2), n % 2, np.float32)
        tracks.append(dataset.Track(f"s{n}", "ballroom", "ballroom", ("waltz", "tango")[n % 2], f"s{n}", rows, music,
                                    mask, np.full(150, 120.0, np.float32)))
    dataset.save(path, dataset.build(tracks, window=48, stride=8, val_fraction=0.34))
    return path


@pytest.mark.slow
def test_cli_trains_checkpoints_and_resumes(tmp_path):
    data = synthetic_file(tmp_path / "d.npz")
    (tmp_path / "cfg.json").write_text(json.dumps(TINY))
    common = ["train", "badm", "--preset", "tiny", "--config", str(tmp_path / "cfg.json"), "--data", str(data),
              "--out", str(tmp_path / "run"), "--threads", "1"]
    assert main(common + ["--steps", "5"]) == 0
    first = read_checkpoint(tmp_path / "run" / train.CHECKPOINT)
    assert first["step"] == 5 and "optimizer" in first and first["stats"]["pose_mean"].shape == (151,)
    assert main(common + ["--steps", "10", "--resume"]) == 0
    second = read_checkpoint(tmp_path / "run" / train.CHECKPOINT)
    assert second["step"] == 10
    assert any(not torch.equal(first["model"][k], second["model"][k]) for k in first["model"])
    model = load_model(tmp_path / "run" / "model.pt")
    assert model.generate(np.zeros((20, FEATURE_DIM), np.float32)).shape == (20, 151)


@pytest.mark.slow
def test_training_lowers_the_validation_loss(tmp_path):
    data = dataset.WindowData.load(synthetic_file(tmp_path / "d.npz"))
    tiny = kind_named("badm").model_class().PRESETS["tiny"]
    cfg = {**train.TRAIN_DEFAULTS, **tiny, **TINY, "steps": 60, "eval_every": 1000}
    torch.manual_seed(0)
    untrained = kind_named("badm").model_class().from_config(cfg, data.stats)
    before = train.validation_loss(untrained, data, cfg, "cpu")
    model = train.train("badm", cfg, data, tmp_path / "run")
    assert train.validation_loss(model, data, cfg, "cpu") < 0.7 * before


def test_bad_inputs_are_one_clear_error(tmp_path, capsys):
    assert main(["train", "badm", "--data", str(tmp_path / "missing.npz")]) == 2
    assert "missing.npz" in capsys.readouterr().err
    data = synthetic_file(tmp_path / "d.npz")
    arguments = ["train", "badm", "--data", str(data), "--out", str(tmp_path / "none"), "--resume", "--steps", "1"]
    assert main(arguments) == 2
    assert "no checkpoint" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{oops")
    assert main(["train", "badm", "--data", str(data), "--config", str(tmp_path / "bad.json")]) == 2
    assert "bad.json" in capsys.readouterr().err


def _rank(rank, world, port, data, out):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    train.setup_distributed("cpu")
    cfg = {**train.TRAIN_DEFAULTS, **kind_named("badm").model_class().PRESETS["tiny"], **TINY, "steps": 4}
    model = train.train("badm", cfg, dataset.WindowData.load(data), out)
    torch.save(model.state_dict(), f"{out}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_process_ddp_keeps_replicas_identical(tmp_path):
    data = synthetic_file(tmp_path / "d.npz")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank, args=(2, port, str(data), str(tmp_path)), nprocs=2, join=True)
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    saved = read_checkpoint(tmp_path / train.CHECKPOINT)
    assert saved["step"] == 4 and len(saved["rng"]) == 2
    initial = kind_named("badm").model_class().from_config({**TINY, **kind_named("badm").model_class().PRESETS["tiny"]},
                                                    dataset.WindowData.load(data).stats).state_dict()
    assert any(not torch.equal(a[k], initial[k]) for k in a)
