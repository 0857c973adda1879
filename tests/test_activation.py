"""The ear's learned beat activation: streaming equals the whole-sequence computation and the torch network it was
trained as, it is causal, held-out sets are chosen right, and training teaches a network where beats are."""
import numpy as np
import pytest
import torch

from onbeat.core.errors import OnbeatError
from onbeat.ear.activation import ASSET, SHIPPED, BeatActivation, Network, frame_inputs, held_out_set, load_set
from onbeat.models import beat_activation


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A weights file in the shipped layout: sets all/fold0/fold1 of two untrained networks each, and their clips."""
    arrays = {"clips/all": np.array(["a", "b", "c"]), "clips/fold0": np.array(["b", "c"]),
              "clips/fold1": np.array(["a", "c"])}
    for k, name in enumerate(("all", "fold0", "fold1")):
        for member in range(2):
            torch.manual_seed(10 * k + member)
            network = beat_activation.Network(dropout=0.0)
            mean, scale = np.full(160, 2.0, np.float32), np.full(160, 1.5, np.float32)
            arrays.update({f"{name}/{member}/{key}": value for key, value in
                           {"mean": mean, "scale": scale, **beat_activation.exported(network)}.items()})
    path = tmp_path_factory.mktemp("weights") / "beat_activation.npz"
    np.savez(path, **arrays)
    return path


def log_mels(frames, seed=0):
    return np.random.default_rng(seed).gamma(2.0, 1.0, (frames, 80)).astype(np.float32)


def test_streaming_equals_the_whole_sequence_and_the_torch_network(weights_file):
    mels = log_mels(700)   # longer than the receptive field (511 frames)
    streamed = BeatActivation("all", weights_file)
    ends = np.cumsum(np.random.default_rng(1).integers(1, 9, len(mels)))   # blocks of 1-8 frames
    starts = np.r_[0, ends[:-1]]
    online = np.concatenate([streamed.process(mels[a:b]) for a, b in zip(starts, ends, strict=True) if a < len(mels)])
    offline = BeatActivation("all", weights_file).run(mels)
    np.testing.assert_allclose(online, offline, rtol=1e-4, atol=1e-6)
    # the torch network the arrays were exported from, on the same standardised inputs, averaged over the set
    members = load_set("all", weights_file)
    expected = []
    for weights in members:
        network = beat_activation.Network(dropout=0.0)
        network.input.weight.data = torch.tensor(weights["input_w"])[:, :, None]
        network.input.bias.data = torch.tensor(weights["input_b"])
        for i, layer in enumerate(network.layers):
            layer.weight.data, layer.bias.data = (torch.tensor(weights[f"layer_{i}_w"]),
                                                  torch.tensor(weights[f"layer_{i}_b"]))
        network.output.weight.data = torch.tensor(weights["output_w"])[None, :, None]
        network.output.bias.data = torch.tensor(weights["output_b"]).reshape(1)
        x = torch.tensor((frame_inputs(mels) - weights["mean"]) / weights["scale"]).T[None]
        expected.append(torch.sigmoid(network(x))[0].detach().numpy())
    np.testing.assert_allclose(offline, np.mean(expected, axis=0), rtol=1e-4, atol=1e-6)


def test_it_is_causal(weights_file):
    mels = log_mels(300)
    changed = mels.copy()
    changed[200:] = log_mels(100, seed=1)
    before, after = (BeatActivation("all", weights_file).run(m) for m in (mels, changed))
    np.testing.assert_array_equal(before[:200], after[:200])
    assert not np.allclose(before[200:], after[200:])


def test_each_clip_gets_a_set_that_never_heard_it(weights_file):
    assert held_out_set("unseen", weights_file) == "all"
    assert held_out_set("a", weights_file) == "fold0"
    assert held_out_set("b", weights_file) == "fold1"
    with pytest.raises(OnbeatError, match="every beat activation set was trained on 'c'"):
        held_out_set("c", weights_file)


def test_a_missing_or_unknown_set_is_a_clear_error(weights_file, tmp_path):
    with pytest.raises(OnbeatError, match="no beat activation set named 'fold7'"):
        load_set("fold7", weights_file)
    with pytest.raises(OnbeatError, match="cannot read the beat activation's weights"):
        load_set(SHIPPED, tmp_path / "missing.npz")


def test_the_shipped_set_is_small_and_was_trained_on_every_clip_the_folds_split():
    with np.load(ASSET) as stored:
        clips = {key.split("/")[1]: set(stored[key]) for key in stored.files if key.startswith("clips/")}
    assert ASSET.stat().st_size < 1_000_000
    folds = [names for name, names in clips.items() if name != SHIPPED]
    assert len(folds) == 3 and all(names < clips[SHIPPED] for names in folds)
    for name in clips[SHIPPED]:   # each clip is left out of exactly one fold set
        assert sum(name not in names for names in folds) == 1


def test_training_learns_where_the_beats_are():
    """A kick on every beat and a hi-hat as loud half-way (the off-beat eighths): superflux rises as much at both,
    while after a short training the activation is at least twice as high on the beats as between them."""
    rng = np.random.default_rng(0)
    clips, beats = [], []
    for bpm in (100, 120, 140):
        frames, period = 1800, 90 * 60 / bpm
        mels = rng.gamma(2.0, 0.05, (frames, 80)).astype(np.float32)
        on = np.arange(5, frames - period, period).astype(int)
        mels[on, :25] += 3.0                                     # kick: the low bands
        mels[(on + period / 2).astype(int), -25:] += 3.0         # hi-hat: the high bands
        clips.append(mels)
        beats.append(on)
    config = {**beat_activation.TRAIN, "steps": 120, "frames": 400, "warmup_frames": 50, "batch": 4}
    weights = beat_activation.train_network(clips, beats, config=config)
    inputs = frame_inputs(clips[1])
    on = beats[1][beats[1] > 520]
    off = (on + 0.5 * 90 * 60 / 120).astype(int)
    superflux = inputs[:, 80:].sum(axis=1)
    assert superflux[on].mean() < 1.1 * superflux[off].mean()
    activation = Network(weights).step(inputs)
    assert activation[on].mean() > 2 * activation[off].mean()


def test_a_clip_listed_twice_weighs_twice_in_the_standardisation():
    """Training lists a clip many times to draw it more often (`train-beats --synth`); its frames are held once, and
    the mean and scale are those of the listed clips stacked."""
    rng = np.random.default_rng(1)
    often, once = rng.normal(2.0, 3.0, (500, 160)).astype(np.float32), rng.normal(-1.0, 1.0, (300, 160))
    mean, scale = beat_activation.standardisation([often, once.astype(np.float32), often])
    stacked = np.concatenate([often, once, often])
    np.testing.assert_allclose(mean, stacked.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(scale, stacked.std(axis=0) + 1e-3, atol=1e-5)
    assert not np.allclose(mean, np.concatenate([often, once]).mean(axis=0), atol=0.1)
