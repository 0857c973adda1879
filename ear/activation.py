"""A learned beat activation: small causal temporal convolutional networks (TCNs) over the onset envelope's log-mel
frames, streamed hop by hop, that fire on beats rather than on every onset.

Superflux novelty peaks on every onset, so off-beat eighths compete with the beats; a network that hears ~6 s of
context learns which onsets are beats (issue 17: on held-out gtzan-dev folds, its values at the annotated beats
stood 1.5-11x above those half-way between beats on most clips, against 1.1-5x for superflux). The clock is fed a
mix of the two (`BeatTracker`), so the superflux's level dynamics, which the clock's tempo estimate relies on, stay.

Trained (`onbeat train-beats --styled ../shared/data/ballroom`) on the gtzan-dev clips and 35 ballroom songs whose
beats are labelled offline from their dance style's tempo (`onbeat.models.beat_labels`): with those songs, held-out
networks scored F 0.835-0.877 in the experiment harness against 0.790-0.825 on gtzan-dev alone (4 and 3 seeds).

One network (trained by `onbeat.models.beat_activation`): each frame's input is the log-mel spectrum and its rise
over the frame before (160 values, standardised); a 1x1 convolution to `CHANNELS`, then `LAYERS` residual blocks
h += elu(conv(h)) with kernel `KERNEL` and dilations 1, 2, 4, ... (a receptive field of about 5.7 s at 90 frames/s),
a 1x1 convolution to one logit, a sigmoid. A set may hold several networks (seeds), their activations averaged; one
is shipped (`onbeat.models.beat_activation.MEMBERS` says why).

Weights: `assets/beat_activation.npz`, arrays named `<set>/<member>/<array>`, and `clips/<set>`, the names of the
clips the set was trained on. The set `all` was trained on every gtzan-dev clip and is the one shipped; `fold0`..
are the cross-validation's: `onbeat eval beats` scores each clip with a set that never heard it (`held_out_set`).
"""
from pathlib import Path

import numpy as np

from onbeat.core.errors import OnbeatError

ASSET = Path(__file__).resolve().parent / "assets" / "beat_activation.npz"
CHANNELS, LAYERS, KERNEL = 24, 8, 3
INPUTS = 160          # log-mel (80 bands) and its rise
SHIPPED = "all"


def frame_inputs(log_mels):
    """(frames, 160) network inputs of consecutive log-mel frames: each frame and its rise over the one before (the
    first frame's rise is 0, as a stream's first frame has nothing before it)."""
    log_mels = np.asarray(log_mels, dtype=np.float32)
    return np.concatenate([log_mels, np.maximum(np.diff(log_mels, axis=0, prepend=log_mels[:1]), 0.0)], axis=1)


def load_set(name=SHIPPED, path=ASSET):
    """The member networks' arrays of one set in the weights file (mean, scale, input_w/b, layer_<i>_w/b,
    output_w/b each)."""
    members: dict[str, dict[str, np.ndarray]] = {}
    for key, array in _stored(path).items():
        set_name, member, array_name = key.split("/")
        if set_name == name:
            members.setdefault(member, {})[array_name] = array
    if not members:
        raise OnbeatError(f"{path}: no beat activation set named {name!r}")
    return [members[member] for member in sorted(members)]


def held_out_set(clip, path=ASSET):
    """The set whose training never heard the clip named `clip`: the shipped one for any clip it was not trained on,
    else the cross-validation fold set that left it out."""
    trained_on = {key.split("/", 1)[1]: set(names) for key, names in _stored(path, "clips").items()}
    for name in [SHIPPED, *sorted(set(trained_on) - {SHIPPED})]:
        if clip not in trained_on.get(name, ()):
            return name
    raise OnbeatError(f"{path}: every beat activation set was trained on {clip!r}")


def _stored(path, prefix=None):
    """The weights file's arrays: the networks' (`<set>/<member>/<array>`), or those under `prefix`/."""
    try:
        with np.load(path) as stored:
            return {key: stored[key] for key in stored.files
                    if (key.split("/", 1)[0] == prefix if prefix else key.count("/") == 2)}
    except (OSError, ValueError) as error:
        raise OnbeatError(f"{path}: cannot read the beat activation's weights ({error})") from None


def _sigmoid(logit):
    # clipped: a click track drives the logit far enough for exp to overflow (the value is 0 or 1 there anyway)
    return 1.0 / (1.0 + np.exp(-np.clip(logit, -60.0, 60.0)))


def _elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0.0)))


class Network:
    """One member network, streamed: `step` takes the next frames (a hop's sub-hops, or a whole clip at once) and
    keeps what its layers need of them for the frames that follow."""

    def __init__(self, weights):
        self.mean, self.scale = weights["mean"], weights["scale"]
        self.input_w, self.input_b = weights["input_w"], weights["input_b"]
        # each layer's (out, in, KERNEL) convolution as one (out, KERNEL x in) matrix over its stacked taps
        self.layers = [(weights[f"layer_{i}_w"].transpose(0, 2, 1).reshape(CHANNELS, -1), weights[f"layer_{i}_b"])
                       for i in range(LAYERS)]
        self.output_w, self.output_b = weights["output_w"], weights["output_b"]
        # per layer, its inputs of the last (KERNEL - 1) x dilation frames, oldest first (zeros before the stream)
        self.history = [np.zeros(((KERNEL - 1) * 2 ** i, CHANNELS), dtype=np.float32) for i in range(LAYERS)]

    def step(self, inputs):
        """The activations of the next (frames, INPUTS) inputs; a whole sequence is computed a layer at a time."""
        h = ((inputs - self.mean) / self.scale) @ self.input_w.T + self.input_b          # (frames, channels)
        for i, (w, b) in enumerate(self.layers):
            dilation, known = 2 ** i, np.concatenate([self.history[i], h])
            self.history[i] = known[len(known) - len(self.history[i]):]
            # frame t's taps: t - (KERNEL-1) x dilation .. t, stacked as the matrix's columns are
            taps = np.concatenate([known[k * dilation: k * dilation + len(h)] for k in range(KERNEL)], axis=1)
            h = h + _elu(taps @ w.T + b)
        return _sigmoid(h @ self.output_w.reshape(-1) + self.output_b)


class BeatActivation:
    """Feed consecutive log-mel frames (`process`), get the beat activation (0..1) of each: the mean of the set's
    networks. Causal: a frame's value depends on it and the frames before it only."""

    def __init__(self, name=SHIPPED, path=ASSET):
        self.weights = load_set(name, path)
        self.networks = [Network(weights) for weights in self.weights]
        self.previous: np.ndarray | None = None   # the last log-mel frame, for the rise

    def process(self, log_mels):
        """The activations of the next (frames, 80) log-mel frames (a hop's sub-hops: one call, not one per frame,
        as the networks' cost is mostly per call)."""
        log_mels = np.asarray(log_mels, dtype=np.float32)
        before = log_mels[:1] if self.previous is None else self.previous[None]
        self.previous = log_mels[-1]
        inputs = frame_inputs(np.concatenate([before, log_mels]))[1:]
        return np.mean([network.step(inputs) for network in self.networks], axis=0)

    def run(self, log_mels):
        """The activations of a whole sequence of frames from a fresh start, as `process` would give them."""
        return np.mean([Network(weights).step(frame_inputs(log_mels)) for weights in self.weights], axis=0)
