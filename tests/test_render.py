import json
import shutil
import subprocess

import numpy as np
import pytest
import soundfile

from onbeat.commands.cli import main
from onbeat.core.motion import Motion
from onbeat.exporters.render import BEAT_FLASH, Camera, _beat_glow

# render writes with ffmpeg and the tests read the result back with ffprobe: both must be here
needs_ffmpeg = pytest.mark.skipif(None in (shutil.which("ffmpeg"), shutil.which("ffprobe")),
                                  reason="ffmpeg/ffprobe not installed")


def swaying_motion(seconds=2.0, fps=30.0):
    t = np.arange(int(seconds * fps)) / fps
    axis_angle = np.zeros((len(t), 24, 3))
    axis_angle[:, 0, 1] = 0.5 * np.sin(2 * np.pi * t)  # the body turns left and right
    axis_angle[:, 16, 2] = -1.0 + 0.5 * np.sin(4 * np.pi * t)  # the left arm waves
    root = np.stack([0.3 * t, np.full_like(t, 0.95), np.zeros_like(t)], axis=1)
    return Motion.from_axis_angle(fps, root, axis_angle)


def probe(path):
    result = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-show_format",
                             "-of", "json", str(path)], capture_output=True, text=True, check=True)
    info = json.loads(result.stdout)
    streams = {s["codec_type"]: s for s in info["streams"]}
    return streams, float(info["format"]["duration"])


def test_camera_keeps_the_dancer_upright_and_unmirrored():
    camera = Camera(azimuth=0, elevation=0)  # straight in front of the dancer
    target = np.zeros((1, 3))
    left_hand, head = camera.project(np.array([[[0.5, 0, 0], [0, 0.5, 0]]]), target)[0]
    assert left_hand[0] > 0.05 and abs(left_hand[1]) < 1e-9  # the dancer's left is on the viewer's right
    assert head[1] > 0.05 and abs(head[0]) < 1e-9  # y is up


@needs_ffmpeg
def test_render_mp4_with_music(tmp_path):
    swaying_motion().save(tmp_path / "dance.npz")
    rate = 22050
    soundfile.write(tmp_path / "song.wav", 0.2 * np.sin(2 * np.pi * 440 * np.arange(5 * rate) / rate), rate)
    assert main(["render", str(tmp_path / "dance.npz"), "-o", str(tmp_path / "dance.mp4"),
                 "--audio", str(tmp_path / "song.wav")]) == 0
    streams, duration = probe(tmp_path / "dance.mp4")
    video = streams["video"]
    assert int(video["nb_read_frames"]) == 60 and video["pix_fmt"] == "yuv420p" and video["codec_name"] == "h264"
    assert streams["audio"]["codec_name"] == "aac"
    assert abs(duration - 2.0) < 0.1  # the 5 s song is cut to the dance


@needs_ffmpeg
def test_render_gif_part_at_lower_fps(tmp_path):
    swaying_motion().save(tmp_path / "dance.npz")
    assert main(["render", str(tmp_path / "dance.npz"), "-o", str(tmp_path / "dance.gif"), "--fps", "15",
                 "--start", "0.5", "--seconds", "1"]) == 0
    streams, _ = probe(tmp_path / "dance.gif")
    assert int(streams["video"]["nb_read_frames"]) == 15 and "audio" not in streams


def test_render_refuses_music_in_a_gif(tmp_path, capsys):
    swaying_motion().save(tmp_path / "dance.npz")
    assert main(["render", str(tmp_path / "dance.npz"), "-o", str(tmp_path / "dance.gif"),
                 "--audio", str(tmp_path / "song.wav")]) == 2
    assert "cannot carry the music" in capsys.readouterr().err and not (tmp_path / "dance.gif").exists()


def test_render_without_ffmpeg_says_so(tmp_path, capsys, monkeypatch):
    swaying_motion().save(tmp_path / "dance.npz")
    monkeypatch.setenv("PATH", str(tmp_path))  # nowhere to find ffmpeg
    assert main(["render", str(tmp_path / "dance.npz"), "-o", str(tmp_path / "dance.mp4")]) == 2
    assert "ffmpeg not found" in capsys.readouterr().err


@needs_ffmpeg
def test_render_reports_unreadable_music(tmp_path, capsys):
    swaying_motion().save(tmp_path / "dance.npz")
    (tmp_path / "song.wav").write_bytes(b"not audio at all" * 100)
    assert main(["render", str(tmp_path / "dance.npz"), "-o", str(tmp_path / "dance.mp4"),
                 "--audio", str(tmp_path / "song.wav")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("onbeat: error:") and "ffmpeg failed" in error and error.count("\n") == 1


def test_beat_dot_lights_on_each_beat_and_fades():
    times = np.array([0.0, 0.5, 0.5 + BEAT_FLASH / 2, 0.5 + BEAT_FLASH, 1.0])
    assert np.allclose(_beat_glow(times, np.array([1.0, 0.5])), [0, 1, 0.5, 0, 1])
    assert _beat_glow(times, np.array([])) is None


def test_render_beats_need_music(tmp_path, capsys):
    swaying_motion().save(tmp_path / "dance.npz")
    assert main(["render", str(tmp_path / "dance.npz"), "-o", str(tmp_path / "dance.mp4"), "--beats"]) == 2
    assert "--beats needs --audio" in capsys.readouterr().err
