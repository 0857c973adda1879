"""`onbeat render`: draw a dance as a skeleton video (mp4 or gif), with the music muxed in when given.

A perspective camera looks at the dancer from the front-right, slightly above, and follows the root smoothly
over a ground grid. All projection happens up front in numpy; matplotlib only redraws a few line collections
per frame on top of a cached empty background (blitting), and ffmpeg encodes the raw frames from a pipe.
"""
import contextlib
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import IO, cast

import numpy as np

from onbeat.core.errors import OnbeatError
from onbeat.core.progress import tracked

WIDTH, HEIGHT, DPI = 640, 480, 100
GIF_FPS, GIF_SCALE = 25.0, 0.75  # GIF frame delays are whole centiseconds: 25 fps is 4 cs each, played as such
LEFT_COLOUR, RIGHT_COLOUR, CENTRE_COLOUR = "#1f77b4", "#d62728", "#333333"
GRID_SPACING, GRID_HALF_SIZE = 0.5, 3.0  # metres
BEAT_FLASH = 0.25  # seconds the beat dot takes to fade


class Camera:
    """Pinhole camera at `distance` metres from its target, turned `azimuth` degrees from the dancer's front
    (+z) towards their right (-x), raised `elevation` degrees. Screen x is to the right, screen y up."""

    def __init__(self, azimuth=30.0, elevation=12.0, distance=4.5, focal=2.0):
        az, el = np.radians(azimuth), np.radians(elevation)
        self.direction = np.array([-np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])  # target → camera
        self.distance, self.focal = distance, focal
        self.forward = -self.direction
        self.right = np.cross(self.forward, [0.0, 1.0, 0.0])
        self.right /= np.linalg.norm(self.right)
        self.up = np.cross(self.right, self.forward)

    def project(self, points, target):
        """points (T, ..., 3) and per-frame targets (T, 3) → screen coordinates (T, ..., 2)."""
        target = target.reshape(target.shape[:1] + (1,) * (points.ndim - 2) + (3,))
        relative = points - (target + self.distance * self.direction)
        depth = np.maximum(relative @ self.forward, 0.1)
        return self.focal * np.stack([relative @ self.right, relative @ self.up], axis=-1) / depth[..., None]


def follow_target(root, fps, seconds=1.0):
    """Where the camera looks: the root's ground position averaged over about a second, at hip height."""
    window = max(1, int(round(seconds * fps)) | 1)
    padded = np.pad(root[:, [0, 2]], ((window // 2, window // 2), (0, 0)), mode="edge")
    kernel = np.ones(window) / window
    smooth = np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(2)], axis=1)
    return np.stack([smooth[:, 0], np.full(len(root), 0.9), smooth[:, 1]], axis=1)


def grid_lines(centre):
    """(T, L, 2, 3) floor lines every GRID_SPACING around each frame's centre, snapped so they stay put in the world."""
    snapped = np.round(centre[:, [0, 2]] / GRID_SPACING) * GRID_SPACING
    steps = np.arange(-GRID_HALF_SIZE, GRID_HALF_SIZE + 1e-9, GRID_SPACING)
    ends = np.array([-GRID_HALF_SIZE, GRID_HALF_SIZE])
    segments = []
    for s in steps:
        segments.append(np.stack([np.full(2, s), np.zeros(2), ends], axis=1))  # along z
        segments.append(np.stack([ends, np.zeros(2), np.full(2, s)], axis=1))  # along x
    lines = np.array(segments)  # (L, 2, 3) around the origin
    return lines[None] + np.stack([snapped[:, 0], np.zeros(len(centre)), snapped[:, 1]], axis=1)[:, None, None]


def bone_colours(names, parents):
    """Left side blue, right side red, the spine and head dark, judged from each bone's child joint name."""
    colours = []
    for j, p in enumerate(parents):
        if p >= 0:
            name = names[j].lower()
            colours.append(LEFT_COLOUR if name.startswith(("left", "l_")) else
                           RIGHT_COLOUR if name.startswith(("right", "r_")) else CENTRE_COLOUR)
    return colours


def render_positions(positions, parents, names, fps, output, audio=None, audio_start=0.0, beat_times=None,
                     quiet=False):
    """Write joint positions (T, J, 3) in metres, y up, as a video at `fps` to `output` (.mp4 or .gif), with a
    progress bar on a terminal unless `quiet`. `beat_times` (seconds of the music) light a dot that fades over
    BEAT_FLASH seconds after each beat."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    output = Path(output)
    encoder = _ffmpeg_command(output, fps, len(positions) / fps, audio, audio_start)
    camera = Camera()
    target = follow_target(positions[:, 0], fps)
    bone_ends = [k for j, p in enumerate(parents) if p >= 0 for k in (p, j)]  # parent, child of each bone
    skeleton = camera.project(positions[:, bone_ends], target).reshape(len(positions), -1, 2, 2)
    shadow = camera.project(positions[:, bone_ends] * np.array([1.0, 0.0, 1.0]), target).reshape(skeleton.shape)
    grid = camera.project(grid_lines(target), target)

    figure = Figure(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI, facecolor="white")
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_xlim(-0.9, 0.9)
    axes.set_ylim(-0.6, 1.8 * HEIGHT / WIDTH - 0.6)  # more room above the chest than below: raised arms
    axes.axis("off")
    grid_art = LineCollection([], colors="#d0d0d0", linewidths=0.8, animated=True)
    shadow_art = LineCollection([], colors="#bbbbbb", linewidths=3, alpha=0.5, capstyle="round", animated=True)
    bone_art = LineCollection([], colors=bone_colours(names, parents), linewidths=3.5, capstyle="round", animated=True)
    clock = axes.text(0.02, 0.96, "", transform=axes.transAxes, fontsize=11, family="monospace", animated=True)
    beat_dot, = axes.plot([0.95], [0.95], "o", color="#ff9900", markersize=16, transform=axes.transAxes, animated=True)
    artists = [axes.add_collection(grid_art), axes.add_collection(shadow_art), axes.add_collection(bone_art), clock]
    beat_glow = _beat_glow(audio_start + np.arange(len(positions)) / fps, beat_times)
    if beat_glow is not None:
        artists.append(beat_dot)
    canvas.draw()
    background = canvas.copy_from_bbox(figure.bbox)

    with tempfile.TemporaryFile() as log:
        with subprocess.Popen(encoder, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log) as process:
            pipe = cast(IO[bytes], process.stdin)  # stdin=PIPE
            with contextlib.suppress(BrokenPipeError):  # ffmpeg stopped early: its log says why
                for t in tracked(range(len(positions)), what=f"rendering {output.name}", quiet=quiet):
                    canvas.restore_region(background)
                    grid_art.set_segments(grid[t])
                    shadow_art.set_segments(shadow[t])
                    bone_art.set_segments(skeleton[t])
                    clock.set_text(f"{audio_start + t / fps:6.2f} s")
                    if beat_glow is not None:
                        beat_dot.set_alpha(beat_glow[t])
                    for artist in artists:
                        axes.draw_artist(artist)
                    pipe.write(np.asarray(canvas.buffer_rgba())[..., :3].tobytes())
            process.communicate()  # closes the pipe, tolerating a broken one, and waits for the file
        if process.returncode != 0:
            log.seek(0)
            lines = log.read().decode(errors="replace").strip().splitlines()
            raise OnbeatError(f"{output}: ffmpeg failed ({lines[0] if lines else f'exit status {process.returncode}'})")


def _beat_glow(times, beat_times):
    """Per frame, 1 on a beat fading to 0 over BEAT_FLASH seconds; None without beats."""
    if beat_times is None or len(beat_times) == 0:
        return None
    beat_times = np.sort(beat_times)
    last = np.searchsorted(beat_times, times + 1e-9) - 1
    since = np.where(last >= 0, times - beat_times[np.maximum(last, 0)], np.inf)
    return np.clip(1.0 - since / BEAT_FLASH, 0.0, 1.0)


def _ffmpeg_command(output, fps, seconds, audio, audio_start):
    suffix = output.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise OnbeatError(f"{output}: output must be .mp4 or .gif")
    if audio is not None and suffix == ".gif":
        raise OnbeatError(f"{output}: a GIF cannot carry the music; write .mp4 to use --audio")
    if audio is not None and not Path(audio).is_file():
        raise OnbeatError(f"{audio}: audio file not found")
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise OnbeatError(f"{output}: ffmpeg not found; install it (e.g. apt install ffmpeg) to write video")
    command = [ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{WIDTH}x{HEIGHT}", "-r", f"{fps:g}", "-i", "-"]
    if suffix == ".gif":
        # Smaller than the mp4 (a GIF stores every pixel), with a palette made from the frames themselves.
        scale = f"scale={int(WIDTH * GIF_SCALE)}:-1:flags=lanczos"
        palette = "split[a][b];[a]palettegen=max_colors=64:stats_mode=diff[p];[b][p]paletteuse=diff_mode=rectangle"
        return command + ["-filter_complex", f"{scale},{palette}", str(output)]
    if audio is not None:
        command += ["-ss", f"{audio_start:.3f}", "-i", str(audio), "-map", "0:v:0", "-map", "1:a:0",
                    "-c:a", "aac", "-b:a", "160k", "-t", f"{seconds:.3f}"]
    return command + ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
                      "-movflags", "+faststart", str(output)]
