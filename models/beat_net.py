"""The beat activation network: data, training and ONNX export (the ear runs the export, `onbeat.ear.activation`).

    python -m onbeat.models.beat_net data  --out runs/beat-data.npz --songs 500      # synthesized, exact labels
    python -m onbeat.models.beat_net train --data runs/beat-data.npz --out runs/beat-net --minutes 35
    python -m onbeat.models.beat_net export --checkpoint runs/beat-net/best.pt -o ear/beat_activation.onnx

Data: songs from `onbeat.models.beat_synth` (our own MIDI through fluidsynth and the MIT GM soundfont), run
through the ear's own `SpectralFrontEnd` hop by hop, so training sees exactly the live features. No GTZAN:
those clips stay unseen for `onbeat eval beats`.

Model: per-frame dense layer, a 2-layer GRU, two sigmoid outputs (beat, downbeat). Causal by construction,
small enough to run every hop in a fraction of a millisecond.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from onbeat.core.music import HOP
from onbeat.ear.activation import FRONT_END_DIM, SUB_HOPS, SpectralFrontEnd, label_frames

logger = logging.getLogger(__name__)
CROP_FRAMES = 720              # 8 s training crops
# the loss weighs the rare beat (1 frame in ~45) and downbeat frames up; the exported network divides the odds
# by the same factors again, so the tracker gets calibrated probabilities (mostly near 0, high on beats)
POSITIVE_WEIGHT = (8.0, 24.0)


def song_features(audio: np.ndarray) -> np.ndarray:
    """(frames, FRONT_END_DIM) front-end features of a whole song at the analysis rate, hop by hop as live."""
    front_end = SpectralFrontEnd()
    hops = len(audio) // HOP
    return np.concatenate([front_end.process(audio[i * HOP:(i + 1) * HOP]) for i in range(hops)])


def targets(frames: int, beats: np.ndarray, downbeats: np.ndarray) -> np.ndarray:
    """(frames, 2) training targets: 1 on the labelled frame, 0.5 on its neighbours (timing tolerance)."""
    out = np.zeros((frames, 2), dtype=np.float32)
    for column, times in enumerate((beats, downbeats)):
        index = label_frames(times)
        for offset, value in ((-1, 0.5), (1, 0.5), (0, 1.0)):
            k = index + offset
            k = k[(k >= 0) & (k < frames)]
            out[k, column] = np.maximum(out[k, column], value)
    return out


def build_annotated(out: Path, folder: Path):
    """Front-end features and targets of annotated real clips (audio + .beats), with their genres and folds."""
    from onbeat.models.beat_clips import fold_of, load_set
    _, clips = load_set(folder)
    features, labels, starts = [], [], [0]
    for clip in clips:
        x = song_features(clip.audio)
        features.append(x.astype(np.float16))
        labels.append(targets(len(x), clip.beats, clip.downbeats))
        starts.append(starts[-1] + len(x))
    np.savez(out, features=np.concatenate(features), targets=np.concatenate(labels), starts=np.array(starts),
             styles=np.array([clip.genre for clip in clips]), folds=fold_of(clips),
             names=np.array([clip.name for clip in clips]))


def build_data(out: Path, songs: int, seconds: float, seed: int):
    """Synthesize `songs` songs and store their features (float16) and targets in one .npz."""
    from onbeat.models.beat_synth import synthesize
    features, labels, starts, styles = [], [], [0], []
    began = time.time()
    for k in range(songs):
        song = synthesize(seed + k, seconds)
        x = song_features(song.audio)
        features.append(x.astype(np.float16))
        labels.append(targets(len(x), song.beats, song.beats[song.positions == 1]))
        starts.append(starts[-1] + len(x))
        styles.append(song.style)
        if k % 50 == 49:
            logger.info("%d songs, %.0f s", k + 1, time.time() - began)
    np.savez(out, features=np.concatenate(features), targets=np.concatenate(labels), starts=np.array(starts),
             styles=np.array(styles))


class BeatNet(nn.Module):
    def __init__(self, hidden: int = 64, layers: int = 2, mean=None, std=None):
        super().__init__()
        self.register_buffer("mean", torch.zeros(FRONT_END_DIM) if mean is None else torch.as_tensor(mean))
        self.register_buffer("std", torch.ones(FRONT_END_DIM) if std is None else torch.as_tensor(std))
        self.input = nn.Sequential(nn.Linear(FRONT_END_DIM, hidden), nn.ELU())
        self.gru = nn.GRU(hidden, hidden, layers, batch_first=True)
        self.output = nn.Linear(hidden, 2)

    def forward(self, features, state):
        """Calibrated (beat, downbeat) probabilities and the next recurrent state (the exported step)."""
        y, state = self.gru(self.input((features - self.mean) / self.std), state)
        return torch.sigmoid(self.output(y) - torch.log(torch.tensor(POSITIVE_WEIGHT))), state

    def logits(self, features):
        return self.output(self.gru(self.input((features - self.mean) / self.std))[0])


def train(data_path: Path, out: Path, minutes: float, hidden: int, seed: int, batch: int = 32, init: Path | None = None,
          lr: float = 2e-3, extra: Path | None = None, extra_folds: tuple = (), steps: int | None = None):
    """Adam on random 8 s crops, BCE weighted towards the rare beat frames; keeps the best validation loss
    (on held-out synthesized songs) as best.pt and the final weights as last.pt (fine-tuning on real clips
    ends there: the synthesized validation songs cannot tell how well it hears real music).
    `init`: a checkpoint to continue from (its weights and input normalisation). `extra`: annotated real
    clips (`build_annotated`), those of `extra_folds` only, half of every batch. Stops after `minutes` or
    `steps`."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data = np.load(data_path)
    features, labels, starts = data["features"], data["targets"], data["starts"]
    songs = len(starts) - 1
    validation = rng.choice(songs, max(1, songs // 20), replace=False)
    training = np.setdiff1d(np.arange(songs), validation)
    sample = features[rng.choice(len(features), min(len(features), 200000), replace=False)].astype(np.float32)
    model = BeatNet(hidden, mean=sample.mean(0), std=sample.std(0) + 1e-3)
    if init is not None:
        saved = torch.load(init, map_location="cpu")
        model = BeatNet(saved["hidden"])
        model.load_state_dict(saved["state"])
        hidden = saved["hidden"]
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    weights = torch.tensor(POSITIVE_WEIGHT)

    sets = [(features, labels, starts, training)]
    if extra is not None:
        real = np.load(extra)
        chosen = np.flatnonzero(np.isin(real["folds"], extra_folds))
        sets.append((real["features"], real["targets"], real["starts"], chosen))
        logger.info("real clips: %s", ", ".join(real["names"][chosen]))

    def crops():
        x, y = [], []
        for k in range(batch):
            features_, labels_, starts_, songs_ = sets[k % len(sets)]
            s = rng.choice(songs_)
            start = rng.integers(starts_[s], starts_[s + 1] - CROP_FRAMES)
            x.append(features_[start:start + CROP_FRAMES])
            y.append(labels_[start:start + CROP_FRAMES])
        return torch.as_tensor(np.stack(x).astype(np.float32)), torch.as_tensor(np.stack(y))

    def loss_of(x, y):
        logits = model.logits(x)
        return nn.functional.binary_cross_entropy_with_logits(logits, y, pos_weight=weights)

    val_rng_state = np.random.default_rng(seed + 1)
    val_x, val_y = [], []
    for s in validation:
        for _ in range(4):
            start = val_rng_state.integers(starts[s], starts[s + 1] - CROP_FRAMES)
            val_x.append(features[start:start + CROP_FRAMES])
            val_y.append(labels[start:start + CROP_FRAMES])
    val_x, val_y = torch.as_tensor(np.stack(val_x).astype(np.float32)), torch.as_tensor(np.stack(val_y))
    out.mkdir(parents=True, exist_ok=True)
    began, step, best = time.time(), 0, float("inf")
    while time.time() - began < minutes * 60 and (steps is None or step < steps):
        model.train()
        x, y = crops()
        loss = loss_of(x, y)
        optimiser.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
        step += 1
        if step % 50 == 0 or step == steps:
            model.eval()
            with torch.no_grad():
                val = float(loss_of(val_x, val_y))
            logger.info("step %d  train %.4f  val %.4f  (%.0f s)", step, loss.item(), val, time.time() - began)
            if val < best:
                best = val
                torch.save({"state": model.state_dict(), "hidden": hidden, "step": step, "val": val}, out / "best.pt")
    torch.save({"state": model.state_dict(), "hidden": hidden, "step": step}, out / "last.pt")
    logger.info("done: %d steps, best val %.4f", step, best)


def export(checkpoint: Path, path: Path, trained_on: str):
    """The trained network as ONNX: features (1, T, FRONT_END_DIM), state -> probabilities (1, T, 2), state;
    `trained_on` (what data it saw) is stored in the file's metadata for the evaluation to print."""
    saved = torch.load(checkpoint, map_location="cpu")
    model = BeatNet(saved["hidden"])
    model.load_state_dict(saved["state"])
    model.eval()
    features = torch.zeros(1, SUB_HOPS, FRONT_END_DIM)
    state = torch.zeros(model.gru.num_layers, 1, model.gru.hidden_size)
    torch.onnx.export(model, (features, state), str(path), input_names=["features", "state"],
                      output_names=["probabilities", "state_out"], dynamic_axes={"features": {1: "frames"},
                                                                                  "probabilities": {1: "frames"}},
                      opset_version=17, dynamo=False)
    import onnx
    exported = onnx.load(str(path))
    exported.metadata_props.add(key="trained_on", value=trained_on)
    onnx.save(exported, str(path))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m onbeat.models.beat_net", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    data = sub.add_parser("data")
    data.add_argument("--out", type=Path, required=True)
    data.add_argument("--songs", type=int, default=500)
    data.add_argument("--seconds", type=float, default=30.0)
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--annotated", type=Path, help="instead: the annotated real clips of this folder")
    fit = sub.add_parser("train")
    fit.add_argument("--data", type=Path, required=True)
    fit.add_argument("--out", type=Path, required=True)
    fit.add_argument("--minutes", type=float, default=35.0)
    fit.add_argument("--hidden", type=int, default=64)
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--threads", type=int, default=1)
    fit.add_argument("--init", type=Path, help="continue from this checkpoint")
    fit.add_argument("--lr", type=float, default=2e-3)
    fit.add_argument("--batch", type=int, default=32)
    fit.add_argument("--steps", type=int, help="stop after this many steps (else after --minutes)")
    fit.add_argument("--extra", type=Path, help="annotated real clips (data --annotated) to mix in")
    fit.add_argument("--extra-folds", default="0,1,2", help="the folds of --extra to train on (comma separated)")
    onnx = sub.add_parser("export")
    onnx.add_argument("--checkpoint", type=Path, required=True)
    onnx.add_argument("-o", "--out", type=Path, required=True)
    onnx.add_argument("--trained-on", required=True, help="what data the network saw (stored in the file)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.step == "data" and args.annotated:
        build_annotated(args.out, args.annotated)
    elif args.step == "data":
        build_data(args.out, args.songs, args.seconds, args.seed)
    elif args.step == "train":
        torch.set_num_threads(args.threads)
        train(args.data, args.out, args.minutes, args.hidden, args.seed, init=args.init, lr=args.lr, extra=args.extra,
              extra_folds=tuple(int(f) for f in args.extra_folds.split(",")), steps=args.steps, batch=args.batch)
    else:
        export(args.checkpoint, args.out, args.trained_on)


if __name__ == "__main__":
    main()
