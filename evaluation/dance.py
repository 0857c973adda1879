"""`onbeat eval dance`: dance metrics for the real validation dances (the reference) and each trained model dancing
to the same validation music, printed as one table; optionally a plot of the speed curve against the beats.

Every model generates `--seconds` of continuous dance per validation song through its numpy sampler (torch eager
behind it), from the raw music rows of the dataset file. Music beats (for BAS and the plot) are where the ear's beat
phase column wraps, i.e. the beats the models were conditioned on. FID_k/FID_g compare each row's features with the
real validation dances'; the "real (train)" row shows how far unseen real dances of the training split are.
"""
from pathlib import Path

import numpy as np

from onbeat.evaluation import metrics
from onbeat.choreographers.kinds import KINDS
from onbeat.core.errors import OnbeatError
from onbeat.core.paths import CHECKPOINTS

COLUMNS = ("FID_k", "FID_g", "Div_k", "Div_g", "BAS", "PFC", "skate", "jerk", "freeze", "x realtime")


# --- data ---------------------------------------------------------------------------------------------------------
def validation_songs(data, clips=None):
    """([(raw rows, raw music)] of the validation sequences with music, [raw rows] of training ones, fps)."""
    from onbeat.models import dataset
    data = Path(data)
    if data.is_dir():
        arrays = dataset.build(dataset.load_tracks(data, ["ballroom"]), window=120, stride=30)
    elif data.is_file():
        arrays = dataset.WindowData.load(data).arrays
    else:
        raise OnbeatError(f"{data}: no such dataset file or data folder (build one with `onbeat dataset build`)")

    def sequences(split):
        chosen = np.flatnonzero((arrays["seq_split"] == split) & arrays["seq_has_music"])
        spans = [slice(arrays["seq_start"][i], arrays["seq_start"][i] + arrays["seq_length"][i]) for i in chosen]
        return [(arrays["rows"][s], arrays["music"][s]) for s in spans]

    songs = sequences(1)[:clips]
    if not songs:
        raise OnbeatError(f"{data}: the dataset has no validation sequence with music")
    return songs, [rows for rows, _ in sequences(0)], float(arrays["fps"])


def positions_of(rows, fps):
    from onbeat.core.representation import decode
    return decode(rows, fps).positions()


def beat_times(music, fps):
    """Times (s) where the beat phase (columns beat_phase_sin/cos) wraps from ~1 back to ~0."""
    from onbeat.core.music import FEATURE_NAMES
    sin, cos = (music[:, FEATURE_NAMES.index(f"beat_phase_{c}")] for c in ("sin", "cos"))
    phase = (np.arctan2(sin, cos) / (2 * np.pi)) % 1.0
    wraps = np.flatnonzero(np.diff(phase) < -0.5) + 1
    return wraps / fps


def parse_models(text):
    """[(kind, checkpoint path)] from 'badm,codes' or 'codes=path.pt'."""
    chosen = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        kind, _, path = item.partition("=")
        if kind not in KINDS:
            raise OnbeatError(f"--models: unknown model {kind!r} (choose {', '.join(sorted(KINDS))})")
        path = Path(path) if path else CHECKPOINTS / f"{kind}_small.pt"
        if not path.is_file():
            raise OnbeatError(f"{path}: no such checkpoint for {kind}")
        chosen.append((kind, path))
    return chosen


def load_choreographer(kind, path):
    from onbeat.models.checkpoint import load_model
    return load_model(path, kind)


# --- metrics ------------------------------------------------------------------------------------------------------
def features_of(dances, fps):
    kinetic, geometric = zip(*(metrics.dance_features(p, fps) for p in dances))
    return np.concatenate(kinetic), np.concatenate(geometric)


def scores(dances, songs, fps, reference_features, reference_speed, features=None):
    """One table row: FID/Div against the reference features, BAS on the songs' beats (None: not scored), physics.
    features: the dances' own `features_of`, when already computed (the reference row)."""
    row = {}
    for name, real, ours in zip(("k", "g"), reference_features, features or features_of(dances, fps)):
        real_n, ours_n = metrics.normalize(real, ours)
        row[f"FID_{name}"] = metrics.fid(ours_n, real_n)
        row[f"Div_{name}"] = metrics.diversity(ours_n)
    if songs is not None:
        row["BAS"] = np.mean([metrics.beat_align_score(p, fps, beat_times(music, fps)) for p, (_, music) in zip(dances, songs)])
    row["PFC"] = np.mean([metrics.pfc(p, fps) for p in dances])
    row["skate"] = np.mean([metrics.foot_skating(p, fps) for p in dances])
    row["jerk"] = np.mean([metrics.jerk(p, fps) for p in dances])
    row["freeze"] = np.mean([metrics.freeze_ratio(p, fps, reference_speed) for p in dances])
    return row


def format_table(table):
    width = max(len(name) for name in table) + 2
    lines = ["".ljust(width) + "".join(c.rjust(11) for c in COLUMNS)]
    for name, row in table.items():
        cells = [f"{row[c]:.3f}" if c in row else "-" for c in COLUMNS]
        lines.append(name.ljust(width) + "".join(cell.rjust(11) for cell in cells))
    return "\n".join(lines)


def plot_speed(path, dances, beats, fps):
    """Mean joint speed of each dance (one panel each) with the music beats as vertical lines."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.ndimage import gaussian_filter1d
    figure, axes = plt.subplots(len(dances), 1, figsize=(12, 2.2 * len(dances)), sharex=True, squeeze=False)
    for axis, (name, positions) in zip(axes[:, 0], dances.items()):
        speed = gaussian_filter1d(metrics.mean_joint_speed(positions, fps), 1.5)
        axis.plot((np.arange(len(speed)) + 0.5) / fps, speed, lw=1)
        for beat in beats[beats < len(positions) / fps]:
            axis.axvline(beat, color="tab:red", lw=0.5, alpha=0.5)
        axis.set_ylabel(f"{name}\nm/s")
    axes[-1, 0].set_xlabel("time (s); red: music beats")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
