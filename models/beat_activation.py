"""Training of the ear's beat activation networks (`onbeat.ear.activation`, where the network is described), in torch;
the ear runs the exported arrays in numpy.

Data: annotated clips' log-mel frames (as the onset envelope computes them live) and their beats. Each step draws
`batch` windows of `frames` frames from the clips, each time-stretched by a random factor in `stretch` (linear
interpolation of the frames, the beats moved with them: tempi the clips do not have), and scores the network's
logits against the beat frames (the beat's frame 1, its two neighbours 0.5) with a binary cross-entropy that
weighs beats `positive_weight` times, after the first `warmup_frames` of each window (the network's receptive field
is still filling there).
"""
import numpy as np
import torch

from onbeat.ear.activation import CHANNELS, INPUTS, KERNEL, LAYERS, frame_inputs

TRAIN = {"steps": 1500, "batch": 16, "frames": 720, "warmup_frames": 300, "rate": 1e-3, "positive_weight": 4.0,
         "dropout": 0.15, "stretch": (0.75, 1.33)}
# the share of training draws given to synthesized songs (`onbeat train-beats --synth`): on held-out gtzan-dev folds
# (eval beats) 0.15 scored F 0.84 over 3 seeds, as none did (0.85); 0.3 and 0.45 scored 0.83 (one seed)
SYNTH_SHARE = 0.15
# networks per set (seeds 0, 1, ...). One: on held-out gtzan-dev folds (eval beats) seeds 0, 1, 2 alone scored F
# 0.858, 0.820, 0.858 and the three averaged 0.855, at three times the cost (an earlier clock: 4 averaged 0.832)
MEMBERS = 1


class Network(torch.nn.Module):
    def __init__(self, dropout):
        super().__init__()
        self.input = torch.nn.Conv1d(INPUTS, CHANNELS, 1)
        self.layers = torch.nn.ModuleList(torch.nn.Conv1d(CHANNELS, CHANNELS, KERNEL, dilation=2 ** i)
                                          for i in range(LAYERS))
        self.output = torch.nn.Conv1d(CHANNELS, 1, 1)
        self.dropout = torch.nn.Dropout(dropout)

    def forward(self, x):   # (batch, INPUTS, frames) -> logits (batch, frames)
        h = self.input(x)
        for i, layer in enumerate(self.layers):
            causal = torch.nn.functional.pad(h, ((KERNEL - 1) * 2 ** i, 0))
            h = h + self.dropout(torch.nn.functional.elu(layer(causal)))
        return self.output(h)[:, 0]


def beat_targets(beat_frames, frames):
    """(frames,) training targets: 1 at each beat's frame, 0.5 at its neighbours. `beat_frames` may be fractional."""
    targets = np.zeros(frames, dtype=np.float32)
    for frame in np.round(beat_frames).astype(int):
        for offset, value in ((-1, 0.5), (1, 0.5), (0, 1.0)):
            if 0 <= frame + offset < frames:
                targets[frame + offset] = max(targets[frame + offset], value)
    return targets


def stretched(inputs, beat_frames, factor):
    """The frames played `factor` times faster (linear interpolation) and the beats moved with them."""
    count = int(len(inputs) / factor)
    source = np.arange(count) * factor
    left = np.minimum(np.floor(source).astype(int), len(inputs) - 2)
    weight = (source - left)[:, None].astype(np.float32)
    return inputs[left] * (1 - weight) + inputs[left + 1] * weight, np.asarray(beat_frames) / factor


def train_network(log_mels, beat_frames, seed=0, config=TRAIN, log=None):
    """One network trained on clips (a list of (frames, bands) log-mel arrays and a list of their beats' frame
    indices) -> its arrays for `onbeat.ear.activation.Network`."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    # a clip listed many times (drawn that much more often) is computed and held once
    distinct = {id(mels): frame_inputs(mels) for mels in log_mels}
    inputs = [distinct[id(mels)] for mels in log_mels]
    mean, scale = standardisation(inputs)
    network = Network(config["dropout"])
    optimiser = torch.optim.Adam(network.parameters(), config["rate"])
    positive = torch.tensor(config["positive_weight"])
    low, high = config["stretch"]
    for step in range(config["steps"]):
        windows, targets = [], []
        while len(windows) < config["batch"]:
            clip = int(rng.integers(len(inputs)))
            frames, beats = stretched(inputs[clip], beat_frames[clip], rng.uniform(low, high))
            if len(frames) <= config["frames"]:
                continue
            start = int(rng.integers(0, len(frames) - config["frames"]))
            windows.append((frames[start:start + config["frames"]] - mean) / scale)
            targets.append(beat_targets(beats - start, config["frames"]))
        x = torch.tensor(np.stack(windows), dtype=torch.float32).transpose(1, 2)
        y = torch.tensor(np.stack(targets))
        warm = config["warmup_frames"]
        loss = torch.nn.functional.binary_cross_entropy_with_logits(network(x)[:, warm:], y[:, warm:],
                                                                    pos_weight=positive)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        if log is not None and step % 500 == 0:
            log(f"step {step}: loss {loss.item():.4f}")
    return {"mean": mean, "scale": scale, **exported(network)}


def standardisation(inputs):
    """(mean, scale) per input of the frames of every listed clip, a clip listed twice counted twice (as the draws
    weigh it); in float64 sums, as the frames of a few hundred clips are many."""
    listed: dict[int, tuple[np.ndarray, int]] = {}   # each distinct clip and how often it is listed
    for x in inputs:
        listed[id(x)] = (x, listed.get(id(x), (x, 0))[1] + 1)
    frames = sum(len(x) * n for x, n in listed.values())
    mean = sum(n * x.sum(axis=0, dtype=np.float64) for x, n in listed.values()) / frames
    variance = sum(n * ((x - mean) ** 2).sum(axis=0) for x, n in listed.values()) / frames
    return mean.astype(np.float32), (np.sqrt(variance) + 1e-3).astype(np.float32)


def exported(network):
    """The arrays the numpy network runs on (the standardisation is added by the caller)."""
    arrays = {"input_w": network.input.weight[:, :, 0], "input_b": network.input.bias,
              "output_w": network.output.weight[0, :, 0], "output_b": network.output.bias[0]}
    for i, layer in enumerate(network.layers):
        arrays[f"layer_{i}_w"], arrays[f"layer_{i}_b"] = layer.weight, layer.bias
    return {key: value.detach().numpy().astype(np.float32) for key, value in arrays.items()}
