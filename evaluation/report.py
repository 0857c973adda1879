"""`onbeat eval dance --report DIR`: plots a person reads, and a short clip per row.

- `speed_<song>.png`: the mean joint speed of the real dancer and of each model (seed 0) over an excerpt of the
  song, with the music's beats as vertical lines: twitching shows as a spike on every beat with stillness between.
- `feet_<song>.png`: per row, the height above the floor of both ankles and toes with their floor contacts shaded,
  and the horizontal speed of the feet while on the floor (skating).
- `beat_profile.png`: the mean joint speed averaged over the phase of the beat (all songs), divided by its mean:
  flat for a dancer who keeps moving, peaked for one who pulses with the beat.
- `pops.png`: rotation pops per joint, each row.
- `clip_<row>.mp4`: a few seconds of the first song danced by each row, with its music (`exporters.render`).
"""
from pathlib import Path

import numpy as np

from onbeat.core.skeleton import FOOT_JOINTS, JOINT_NAMES, PARENTS
from onbeat.evaluation import metrics

EXCERPT = (20.0, 32.0)  # seconds of each song plotted (or the song's last 12 s when shorter)
CLIP = (12.0, 20.0)  # seconds of the first song rendered
PROFILE_BINS = 16


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _excerpt(seconds):
    start = min(EXCERPT[0], max(seconds - (EXCERPT[1] - EXCERPT[0]), 0.0))
    return start, min(start + EXCERPT[1] - EXCERPT[0], seconds)


def write_report(evaluation, folder: Path, clips=True) -> list:
    """Write the plots (and clips) into `folder`; returns the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index, real in enumerate(evaluation.songs):
        dances = {row: runs[0][index] for row, runs in evaluation.dances.items()}
        name = real.song.name
        written.append(plot_speed(folder / f"speed_{name}.png", name, dances, real.beats))
        written.append(plot_feet(folder / f"feet_{name}.png", name, dances))
    written.append(plot_beat_profile(folder / "beat_profile.png", evaluation))
    written.append(plot_pops(folder / "pops.png", evaluation))
    if clips:
        written += render_clips(evaluation, folder)
    return written


def plot_speed(path, title, dances, beats):
    plt = _pyplot()
    start, end = _excerpt(min(d.seconds for d in dances.values()))
    figure, axes = plt.subplots(len(dances), 1, figsize=(13, 1.9 * len(dances) + 0.6), sharex=True, squeeze=False)
    for axis, (row, dance) in zip(axes[:, 0], dances.items(), strict=True):
        speed = metrics.mean_joint_speed(dance.positions, dance.fps)
        times = (np.arange(len(speed)) + 0.5) / dance.fps
        shown = (times >= start) & (times <= end)
        axis.plot(times[shown], speed[shown], lw=1.2, color="tab:blue")
        for beat in beats[(beats >= start) & (beats <= end)]:
            axis.axvline(beat, color="tab:red", lw=0.6, alpha=0.6)
        axis.set_ylabel(f"{row}\nm/s")
        axis.set_ylim(bottom=0)
    axes[0, 0].set_title(f"{title}: mean joint speed (blue) against the music's beats (red)")
    axes[-1, 0].set_xlabel("time in the song (s)")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def plot_feet(path, title, dances):
    plt = _pyplot()
    start, end = _excerpt(min(d.seconds for d in dances.values()))
    figure, axes = plt.subplots(2 * len(dances), 1, figsize=(13, 2.6 * len(dances) + 0.6), sharex=True, squeeze=False,
                                gridspec_kw={"height_ratios": [2, 1] * len(dances)})
    labels = [JOINT_NAMES[j].replace("_", " ").replace("Foot", "toe").lower() for j in FOOT_JOINTS]
    colours = ["tab:blue", "tab:red", "tab:cyan", "tab:orange"]
    for k, (row, dance) in enumerate(dances.items()):
        height_axis, speed_axis = axes[2 * k, 0], axes[2 * k + 1, 0]
        heights, _ = metrics.foot_heights(dance.positions)
        on_floor = metrics.foot_contacts(dance.positions, dance.fps, with_speed=False)
        speed = metrics.foot_horizontal_speed(dance.positions, dance.fps)
        times = np.arange(len(heights)) / dance.fps
        shown = (times >= start) & (times <= end)
        for j in range(len(FOOT_JOINTS)):
            height_axis.plot(times[shown], 100 * heights[shown, j], lw=1, color=colours[j], label=labels[j])
            height_axis.fill_between(times[shown], -4 + j, -3 + j, where=on_floor[shown, j], color=colours[j],
                                     step="mid", lw=0)
            sliding = np.where(on_floor[:, j], speed[:, j], np.nan)
            speed_axis.plot(times[shown], sliding[shown], lw=1, color=colours[j])
        height_axis.axhline(0, color="black", lw=0.6)
        height_axis.set_ylabel(f"{row}\nheight (cm)")
        speed_axis.set_ylabel("on floor\nm/s")
        speed_axis.set_ylim(bottom=0)
    axes[0, 0].legend(loc="upper right", ncol=4, fontsize=8)
    axes[0, 0].set_title(f"{title}: foot heights above the floor (bars below 0: on the floor) and their horizontal "
                         "speed while on the floor (skating)")
    axes[-1, 0].set_xlabel("time in the song (s)")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def beat_profile(dance, beats, bins=PROFILE_BINS):
    """(bins,) mean joint speed averaged per phase bin of the beat, divided by its mean (NaN where empty)."""
    speed = metrics.mean_joint_speed(dance.positions, dance.fps)
    inside, _, phase = metrics.beat_phases((np.arange(len(speed)) + 0.5) / dance.fps, beats)
    slot = np.minimum((phase * bins).astype(int), bins - 1)
    profile = np.array([speed[inside][slot == b].mean() if (slot == b).any() else np.nan for b in range(bins)])
    return profile / np.nanmean(profile)


def plot_beat_profile(path, evaluation):
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4))
    phases = (np.arange(PROFILE_BINS) + 0.5) / PROFILE_BINS
    for row, runs in evaluation.dances.items():
        profiles = [beat_profile(d, real.beats) for run in runs for d, real in zip(run, evaluation.songs, strict=True)]
        axis.plot(phases, np.nanmean(profiles, axis=0), marker="o", ms=3, label=row)
    axis.set_xlabel("phase of the beat (0 = on the beat)")
    axis.set_ylabel("mean joint speed / its mean")
    axis.axhline(1.0, color="gray", lw=0.6)
    return _finish(figure, axis, "Speed through the beat, all songs", path)


def plot_pops(path, evaluation):
    """Rotation pops per joint (% of frames), each row a bar group."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(13, 4))
    rows = list(evaluation.rows)
    width = 0.8 / len(rows)
    for k, row in enumerate(rows):
        values = [evaluation.rows[row].get(f"pops_{name}", (np.nan,))[0] for name in JOINT_NAMES]
        axis.bar(np.arange(len(JOINT_NAMES)) + k * width, values, width, label=row)
    axis.set_xticks(np.arange(len(JOINT_NAMES)) + 0.4 - width / 2, JOINT_NAMES, rotation=60, ha="right", fontsize=8)
    axis.set_ylabel("% of frames")
    return _finish(figure, axis, "Rotation pops: frames in which a joint turns more than 30 degrees per 1/60 s", path)


def _finish(figure, axis, title, path):
    """Title and legend on `axis`, the figure saved to `path` and closed; returns `path`."""
    axis.set_title(title)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    _pyplot().close(figure)
    return path


def render_clips(evaluation, folder):
    """`clip_<row>.mp4`: CLIP seconds of the first song, each row's dance (seed 0), with the music."""
    from onbeat.exporters.render import render_positions
    real = evaluation.songs[0]
    written = []
    for row, runs in evaluation.dances.items():
        dance = runs[0][0]
        first = int(min(CLIP[0], max(dance.seconds - (CLIP[1] - CLIP[0]), 0.0)) * dance.fps)
        last = first + int((CLIP[1] - CLIP[0]) * dance.fps)
        path = folder / f"clip_{row}.mp4"
        render_positions(dance.positions[first:last], PARENTS, JOINT_NAMES, dance.fps, path, real.song.audio,
                         first / dance.fps, real.beats)
        written.append(path)
    return written
