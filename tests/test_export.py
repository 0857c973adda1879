"""torch → ONNX export: the graphs, their metadata, and parity with torch."""
import numpy as np
import onnx
import pytest
import torch

from onbeat.choreographers import badm_sampler, codes_sampler
from onbeat.choreographers.conditioning import conditioned
from onbeat.choreographers.kinds import kind_named, open_steps
from onbeat.choreographers.onnx import OnnxStep, metadata_props
from onbeat.commands.cli import main
from onbeat.core.errors import OnbeatError
from onbeat.core.music import FEATURE_NAMES
from onbeat.core.styles import STYLES
from onbeat.exporters import onnx_export, parity

pytestmark = pytest.mark.slow  # every test here traces torch modules into ONNX


class TinyDenoiser(torch.nn.Module):
    """Just enough of a step module to exercise the export machinery: conv over time, an integer step input."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(6, 6, 3, padding=1)
        self.step_scale = torch.nn.Embedding(10, 6)

    def forward(self, noisy, t, music):
        h = self.conv(noisy.transpose(1, 2)).transpose(1, 2)
        return h * self.step_scale(t)[:, None] + music.mean(-1, keepdim=True)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Batch-1 steps of tiny models: a second thread only adds waiting on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_inputs():
    generator = torch.Generator().manual_seed(0)
    return {"noisy": torch.randn(1, 8, 6, generator=generator), "t": torch.tensor([3]),
            "music": torch.randn(1, 8, len(FEATURE_NAMES), generator=generator)}


def test_export_graph_writes_a_checked_model_with_metadata_that_runs_like_torch(tmp_path):
    module, inputs = TinyDenoiser().eval(), tiny_inputs()
    props = metadata_props("badm", "step", {"fps": 30, "normalizer": {"mean": [0.5], "std": [2.0]}}, "ab" * 32)
    path = onnx_export.export_graph(module, inputs, ["x0"], tmp_path / "tiny.onnx", props)

    stored = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert stored == props
    assert stored["feature_names"].split(",") == list(FEATURE_NAMES)

    step = OnnxStep(path, threads=1)
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
    assert kind_named("badm").graph_paths(tmp_path / "b.onnx") == {"step": tmp_path / "b.onnx"}
    assert kind_named("codes").graph_paths(tmp_path / "codes.onnx") == {
        "gpt": tmp_path / "codes.gpt.onnx", "decoder": tmp_path / "codes.decoder.onnx"}


def test_missing_checkpoint_is_one_error_line(tmp_path, capsys):
    assert main(["export", "badm", "--checkpoint", str(tmp_path / "none.pt"), "-o", str(tmp_path / "m.onnx")]) == 2
    assert capsys.readouterr().err.strip() == f"onbeat: error: {tmp_path / 'none.pt'}: no such checkpoint"


# --- the real models (tiny presets: same graphs, seconds to export) ----------------------------------------------

def save_tiny_checkpoint(kind, folder, styles=0):
    """A freshly initialised tiny model of `kind` (taking style ids and the music mask when `styles` > 0), saved
    the way `onbeat train` saves it."""
    from onbeat.core.music import FEATURE_DIM
    from onbeat.core.representation import POSE_DIM
    from onbeat.models import train

    rng = np.random.default_rng(1)
    stats = {"music_mean": rng.random(FEATURE_DIM), "music_std": 1 + rng.random(FEATURE_DIM),
             "pose_mean": 0.1 * rng.standard_normal(POSE_DIM), "pose_std": 1 + rng.random(POSE_DIM)}
    torch.manual_seed(0)
    cfg = {"preset": "tiny", **kind_named(kind).model_class().PRESETS["tiny"], "styles": styles}
    model = kind_named(kind).model_class().from_config(cfg, stats)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    train.save_checkpoint(folder, kind, model, optimizer, 0, cfg, stats, [train.rng_state()], 0.0)
    return folder / "model.pt"


@pytest.fixture(scope="module", params=["badm", "codes", "badm styled", "codes styled"])
def exported(request, tmp_path_factory):
    """(kind, checkpoint, output) of a tiny model exported by `onbeat export` (styled: with style and mask inputs)."""
    kind, styled = request.param.split()[0], request.param.endswith("styled")
    folder = tmp_path_factory.mktemp(request.param.replace(" ", "-"))
    checkpoint = save_tiny_checkpoint(kind, folder, styles=len(STYLES) if styled else 0)
    assert main(["export", kind, "--checkpoint", str(checkpoint), "-o", str(folder / f"{kind}.onnx")]) == 0
    return kind, checkpoint, folder / f"{kind}.onnx"


def test_exported_files_are_valid_onnx_with_the_runtime_metadata(exported):
    kind, checkpoint, output = exported
    for name, path in kind_named(kind).graph_paths(output).items():
        model = onnx.load(str(path))
        onnx.checker.check_model(model, full_check=True)
        assert model.opset_import[0].version >= 17
        step = OnnxStep(path, threads=1)
        meta = step.metadata
        assert (step.kind, step.graph) == (kind, name)
        assert meta["checkpoint_sha256"] == onnx_export.file_sha256(checkpoint)
        assert meta["fps"] == 30 and meta["pose_dim"] == 151 and meta["slice_frames"] > 0
        assert len(meta["pose_mean"] if kind == "badm" else meta["sampling"]) > 0
        assert (meta["ddim_steps"] if kind == "badm" else meta["code_rate"]) > 0


def test_torch_and_onnxruntime_agree_on_a_step_and_a_20_second_rollout(exported):
    kind, checkpoint, output = exported
    results = parity.check_parity(kind, checkpoint, output, report=lambda line: None)
    assert any("20 s rollout" in what for what in results)
    assert max(results.values()) <= parity.TOLERANCE


def test_parity_catches_a_different_model(exported, tmp_path):
    """The check can fail: another model's export (other weights) against this checkpoint."""
    kind, checkpoint, output = exported
    state = torch.load(checkpoint, weights_only=False)
    state["model"] = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v
                      for k, v in state["model"].items()}
    torch.save(state, tmp_path / "other.pt")
    with pytest.raises(OnbeatError, match="differs from torch"):
        parity.check_parity(kind, tmp_path / "other.pt", output, report=lambda line: None, seconds=2.0)


def test_exporting_the_wrong_kind_is_one_error(exported, tmp_path):
    kind, checkpoint, _ = exported
    other = "codes" if kind == "badm" else "badm"
    with pytest.raises(OnbeatError, match=f"a {kind} checkpoint, not {other}"):
        onnx_export.export(other, checkpoint, tmp_path / "x.onnx")


def test_bench_model_prints_torch_and_onnxruntime_side_by_side(exported, capsys):
    kind, checkpoint, output = exported
    args = ["bench", "model", "--model", kind, "--checkpoint", str(checkpoint), "--seconds", "0.5", "--rounds", "1"]
    assert main(args) == 0
    table = capsys.readouterr().out.splitlines()
    for runtime_name in ("torch eager", "onnxruntime cpu"):
        for threads in (1, 2):
            rows = [line for line in table if line.startswith(f"{kind:<6} {runtime_name:<17} {threads:>3}")]
            assert [row.split()[4] for row in rows] == list(kind_named(kind).graph_paths(output))
            median_ms, realtime = float(rows[0].split()[5]), float(rows[0].split()[-1])
            assert median_ms > 0 and realtime > 0


def test_styled_graphs_take_style_and_mask_inputs_the_runtime_fills(exported):
    kind, _, output = exported
    graph, music_input = ("step", badm_sampler.MUSIC_INPUT) if kind == "badm" else ("gpt", codes_sampler.MUSIC_INPUT)
    step = open_steps(output)[1][graph]
    styled = bool(step.metadata["styles"])
    assert ({"music_mask", "style"} <= {name for name, _ in step.inputs}) == styled
    filled = conditioned(step, step.metadata, music_input)
    if not styled:
        assert filled is step
        return
    inputs = kind_named(kind).model_class().parity_inputs(graph, step.metadata, np.random.default_rng(0))[:-2]
    freestyle = filled(*inputs)  # the samplers' inputs; the mask and the style (freestyle) are filled in
    filled.style = "krump"
    assert parity.max_difference(freestyle, filled(*inputs)) > 1e-4
    with pytest.raises(OnbeatError, match="unknown style"):
        filled.style = "salsa"
