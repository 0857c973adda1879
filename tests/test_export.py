"""torch → ONNX export: the graphs, their metadata, and parity with torch."""
import numpy as np
import onnx
import pytest
import torch

from onbeat.exporters import onnx_export
from onbeat.models.errors import OnbeatError
from onbeat.stream import runtime
from onbeat.stream.cli import main
from onbeat.stream.features import FEATURE_NAMES


class TinyDenoiser(torch.nn.Module):
    """Just enough of a step module to exercise the export machinery: conv over time, an integer step input."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(6, 6, 3, padding=1)
        self.step_scale = torch.nn.Embedding(10, 6)

    def forward(self, noisy, t, music):
        h = self.conv(noisy.transpose(1, 2)).transpose(1, 2)
        return h * self.step_scale(t)[:, None] + music.mean(-1, keepdim=True)


def tiny_inputs():
    generator = torch.Generator().manual_seed(0)
    return {"noisy": torch.randn(1, 8, 6, generator=generator), "t": torch.tensor([3]),
            "music": torch.randn(1, 8, len(FEATURE_NAMES), generator=generator)}


def test_export_graph_writes_a_checked_model_with_metadata_that_runs_like_torch(tmp_path):
    module, inputs = TinyDenoiser().eval(), tiny_inputs()
    props = runtime.metadata_props("badm", {"fps": 30, "normalizer": {"mean": [0.5], "std": [2.0]}}, "ab" * 32)
    path = onnx_export.export_graph(module, inputs, ["x0"], tmp_path / "tiny.onnx", props)

    stored = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert stored == props
    assert stored["feature_names"].split(",") == list(FEATURE_NAMES)

    step = runtime.OnnxStep(path, "badm", threads=1)
    assert step.metadata["normalizer"] == {"mean": [0.5], "std": [2.0]}
    with torch.no_grad():
        expected = module(**inputs).numpy()
    got = step(*(x.numpy() for x in inputs.values()))
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() < 1e-5


def test_export_graph_wants_inputs_in_forward_order(tmp_path):
    inputs = tiny_inputs()
    swapped = {"t": inputs["t"], "noisy": inputs["noisy"], "music": inputs["music"]}
    with pytest.raises(ValueError, match="forward's arguments"):
        onnx_export.export_graph(TinyDenoiser(), swapped, ["x0"], tmp_path / "x.onnx", {})


def test_codes_writes_two_graphs_beside_the_output(tmp_path):
    assert onnx_export.graph_paths("badm", tmp_path / "b.onnx") == {"badm": tmp_path / "b.onnx"}
    assert onnx_export.graph_paths("codes", tmp_path / "codes.onnx") == {
        "codes.gpt": tmp_path / "codes.gpt.onnx", "codes.decoder": tmp_path / "codes.decoder.onnx"}


def test_missing_checkpoint_is_one_error_line(tmp_path, capsys):
    assert main(["export", "badm", "--checkpoint", str(tmp_path / "none.pt"), "-o", str(tmp_path / "m.onnx")]) == 2
    assert capsys.readouterr().err.strip() == f"onbeat: error: {tmp_path / 'none.pt'}: no such checkpoint"
