"""Adding a model kind is one module and one registration: a toy kind defined here trains, exports, loads and
dances through the real `onbeat` commands, which know nothing else about it."""
from dataclasses import asdict, dataclass

import numpy as np
import pytest
import torch
from test_train import synthetic_file

from onbeat.choreographers.base import ModelChoreographer
from onbeat.choreographers.kinds import KINDS, Kind, kind_named, register
from onbeat.choreographers.onnx import OnnxStep
from onbeat.commands.cli import main
from onbeat.core.errors import OnbeatError
from onbeat.core.motion import Motion
from onbeat.core.music import FEATURE_DIM, FEATURE_FPS
from onbeat.core.representation import POSE_DIM
from onbeat.models.checkpoint import config_from


@dataclass
class ToyConfig:
    slice_frames: int = 6


class ToyModel(torch.nn.Module):
    """A pose row per music row, linearly (the whole "kind": a torch model with the kind's export contract)."""

    PRESETS = {"small": {}}
    CONFIG = ToyConfig

    def __init__(self, cfg, stats):
        super().__init__()
        self.cfg = cfg
        self.linear = torch.nn.Linear(FEATURE_DIM, POSE_DIM)
        self.register_buffer("pose_mean", torch.as_tensor(stats["pose_mean"], dtype=torch.float32))

    @classmethod
    def from_config(cls, cfg, stats):
        return cls(config_from(ToyConfig, cfg), stats)

    def forward(self, music):
        return self.pose_mean + 0.1 * self.linear(music)

    def loss(self, batch):
        loss = torch.nn.functional.mse_loss(self(batch["music"]), batch["motion"])
        return loss, {"mse": loss.item()}

    def metadata(self):
        return {"model": "toy", "fps": FEATURE_FPS, "slice_frames": self.cfg.slice_frames, "config": asdict(self.cfg)}

    def export_graphs(self):
        return {"step": (self, {"music": torch.zeros(1, self.cfg.slice_frames, FEATURE_DIM)}, ["rows"])}

    def step_callables(self):
        def step(music):
            with torch.no_grad():
                return self(torch.from_numpy(np.asarray(music, np.float32))).numpy()
        return {"step": step}

    @staticmethod
    def parity_inputs(graph, metadata, rng):
        return (rng.random((1, metadata["slice_frames"], FEATURE_DIM)).astype(np.float32),)


class ToyChoreographer(ModelChoreographer):
    """The toy's numpy runtime: one graph call per slice."""

    def __init__(self, steps, metadata, seed=None):
        self.step = steps["step"]
        super().__init__(int(metadata["slice_frames"]), seed)

    def restart(self):
        pass

    def next_rows(self, music, key_pose=None):
        return self.step(music[None, :self.slice_frames])[0]


@pytest.fixture
def toy_kind():
    register(Kind("toy", ("step",), f"{__name__}:ToyChoreographer", f"{__name__}:ToyModel"))
    yield kind_named("toy")
    del KINDS["toy"]


@pytest.mark.slow
def test_a_registered_toy_kind_trains_exports_loads_and_dances_through_the_commands(toy_kind, tmp_path):
    data = synthetic_file(tmp_path / "data.npz")
    run, model = tmp_path / "run", tmp_path / "toy.onnx"
    assert main(["train", "toy", "--data", str(data), "--out", str(run), "--steps", "30", "--threads", "1"]) == 0
    assert main(["export", "toy", "--checkpoint", str(run / "model.pt"), "-o", str(model), "--check"]) == 0
    step = OnnxStep(model)
    assert (step.kind, step.graph, step.metadata["slice_frames"]) == ("toy", "step", 6)
    recording = tmp_path / "dance.npz"
    assert main(["play", "--demo", "--silent", "--seconds", "3", "--model", str(model), "--no-vmc",
                 "--control-port", "0", "--quiet", "--record", str(recording)]) == 0
    dance = Motion.load(recording)
    assert dance.num_frames >= 150 and np.isfinite(dance.rotations).all()
    assert np.ptp(dance.rotations[60:], axis=0).max() > 1e-3  # it moves with the music, not a held pose


@pytest.mark.slow
def test_an_unregistered_kind_in_a_file_is_one_clear_error(toy_kind, tmp_path):
    data = synthetic_file(tmp_path / "data.npz")
    assert main(["train", "toy", "--data", str(data), "--out", str(tmp_path), "--steps", "2", "--threads", "1"]) == 0
    assert main(["export", "toy", "--checkpoint", str(tmp_path / "model.pt"), "-o", str(tmp_path / "t.onnx")]) == 0
    del KINDS["toy"]
    from onbeat.choreographers.kinds import load_choreographer
    with pytest.raises(OnbeatError, match="unknown model kind 'toy'"):
        load_choreographer(tmp_path / "t.onnx")
    register(Kind("toy", ("step",), f"{__name__}:ToyChoreographer", f"{__name__}:ToyModel"))  # for the fixture
