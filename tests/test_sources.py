"""Audio sources: synthetic drums, files of every format, bad files, the device ring buffer, and real capture
through sounddevice from a private JACK server."""
import builtins
import contextlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile
from jack_helpers import SAMPLE_RATE, summary_of

from onbeat.core.errors import OnbeatError
from onbeat.ear.devices import import_sounddevice
from onbeat.ear.sources import (
    DeviceSource,
    FileSource,
    RingBuffer,
    SyntheticSource,
    read_audio,
)

pytestmark = pytest.mark.realtime  # its JACK and real-time tests judge timing; the rest are quick: all alone


def collect(source):
    with source:
        blocks = list(source.blocks())
    for block in blocks:
        assert block.samples.dtype == np.float32 and block.samples.shape[1] == source.channels
        assert block.sample_rate == source.sample_rate
    return blocks, np.concatenate([block.samples for block in blocks])


def onsets(signal, rate, threshold=0.1, gap_s=0.2):
    """Times (s) where |signal| first rises above `threshold` after at least `gap_s` below it."""
    loud = np.flatnonzero(np.abs(signal) > threshold)
    return loud[np.r_[True, np.diff(loud) > gap_s * rate]] / rate if len(loud) else np.zeros(0)


# --- synthetic -----------------------------------------------------------------------------------------------

def test_synthetic_source_is_deterministic_with_true_beats():
    _, first = collect(SyntheticSource(bpm=100, seconds=5, realtime=False))
    _, again = collect(SyntheticSource(bpm=100, seconds=5, realtime=False))
    _, other_seed = collect(SyntheticSource(bpm=100, seconds=5, realtime=False, seed=1))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other_seed)
    assert first.shape == (5 * 44100, 1) and np.abs(first).max() <= 1.0
    beats = SyntheticSource(bpm=100).beat_times(5)
    np.testing.assert_allclose(beats, np.arange(9) * 0.6, atol=1e-4)
    # each beat is a hit: the 20 ms after it are much louder than the 20 ms before
    rate = 44100
    for beat in beats[1:]:
        at = int(round(beat * rate))
        after, before = np.abs(first[at:at + 882]).max(), np.abs(first[at - 882:at]).max()
        assert after > 3 * before


def test_synthetic_source_rejects_a_silly_tempo():
    with pytest.raises(OnbeatError, match="bpm"):
        SyntheticSource(bpm=0)


def test_realtime_sources_keep_real_time():
    started = time.monotonic()
    blocks, samples = collect(SyntheticSource(seconds=1.0, realtime=True))
    assert 0.85 < time.monotonic() - started < 1.6
    assert blocks[-1].time == pytest.approx(1.0 - len(blocks[-1].samples) / 44100)


# --- files ---------------------------------------------------------------------------------------------------

def test_wav_file_streams_its_samples(tmp_path):
    rate = 32000
    signal = (0.5 * np.sin(np.arange(rate) * 2 * np.pi * 440 / rate)).astype(np.float32)
    stereo = np.stack([signal, -signal], axis=1)
    soundfile.write(tmp_path / "tone.wav", stereo, rate, subtype="PCM_16")
    blocks, samples = collect(FileSource(tmp_path / "tone.wav", play=False, realtime=False, block=1000))
    assert samples.shape == (rate, 2) and blocks[1].time == pytest.approx(1000 / rate)
    np.testing.assert_allclose(samples, stereo, atol=1e-4)


def test_silent_realtime_file_takes_its_duration(tmp_path):
    soundfile.write(tmp_path / "second.wav", np.zeros(22050, dtype=np.float32), 22050)
    started = time.monotonic()
    collect(FileSource(tmp_path / "second.wav", play=False, realtime=True))
    assert 0.85 < time.monotonic() - started < 1.6
    started = time.monotonic()
    collect(FileSource(tmp_path / "second.wav", play=False, realtime=False))
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize("name, rate, channels, seconds", [
    ("gtzan-dev/blues.00016.flac", 16000, 1, 30.0),
    ("music-cc/admiralbob77_-_Choice_-_Drum-bass.ogg", 22050, 1, 25.0),
    ("beat-unit/808kick120bpm.mp3", 44100, 2, 10.0),
])
def test_real_files_of_each_format(data_dir, name, rate, channels, seconds):
    source = FileSource(data_dir / name, play=False, realtime=False)
    assert (source.sample_rate, source.channels) == (rate, channels)
    _, samples = collect(source)
    assert abs(len(samples) / rate - seconds) < 0.1 and np.abs(samples).max() > 0.05


def test_mp3_kicks_are_at_120_bpm(data_dir):
    samples, rate = read_audio(data_dir / "beat-unit/808kick120bpm.mp3")
    kicks = onsets(samples[:, 0], rate, threshold=0.7, gap_s=0.3)   # the 808's attack peaks above its tail
    assert len(kicks) >= 15 and np.median(np.diff(kicks)) == pytest.approx(0.5, abs=0.01)


@pytest.mark.skipif(not shutil.which("ffmpeg"), reason="ffmpeg not installed")
def test_formats_libsndfile_cannot_read_go_through_ffmpeg(tmp_path):
    path = tmp_path / "tone.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1:sample_rate=24000",
                    "-c:a", "aac", str(path)], check=True)
    with pytest.raises(soundfile.LibsndfileError):
        soundfile.info(str(path))
    source = FileSource(path, play=False, realtime=False)
    assert (source.sample_rate, source.channels) == (24000, 1)
    _, samples = collect(source)
    assert abs(len(samples) - 24000) < 2048   # the aac encoder adds a frame or so of padding
    spectrum = np.abs(np.fft.rfft(samples[:, 0]))
    assert np.fft.rfftfreq(len(samples), 1 / 24000)[np.argmax(spectrum)] == pytest.approx(440, abs=2)


@pytest.mark.parametrize("problem", ["missing", "empty", "garbage", "text"])
def test_bad_files_name_the_file(tmp_path, problem):
    path = tmp_path / f"{problem}.wav"
    if problem == "empty":
        path.write_bytes(b"")
    elif problem == "garbage":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif problem == "text":
        path = tmp_path / "notes.ogg"
        path.write_text("not music\n")
    with pytest.raises(OnbeatError, match=str(path)):
        FileSource(path, play=False)


def test_header_only_wav_is_an_error(tmp_path):
    path = tmp_path / "nothing.wav"
    soundfile.write(path, np.zeros((0, 1), dtype=np.float32), 44100)
    with pytest.raises(OnbeatError, match="no audio"):
        FileSource(path, play=False)


def wav_header(rate, channels, frames, bits=16):
    data = frames * channels * bits // 8
    return (b"RIFF" + struct.pack("<I", 36 + data) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate,
            rate * channels * bits // 8 % 2 ** 32, channels * bits // 8, bits) + b"data" + struct.pack("<I", data))


@pytest.mark.parametrize("rate, channels, problem", [
    (2_147_483_647, 1, "sample rate 2147483647 Hz is outside 1000..768000 Hz"),
    (999, 1, "sample rate 999 Hz"), (768_001, 2, "sample rate 768001 Hz"),
])
def test_a_header_claiming_an_absurd_format_is_named_not_allocated(tmp_path, rate, channels, problem):
    path = tmp_path / "claims.wav"
    path.write_bytes(wav_header(rate, channels, 100) + bytes(200 * channels))
    with pytest.raises(OnbeatError, match=f"{path}: {problem}"):
        FileSource(path, play=False)


def test_the_feature_extractor_refuses_a_rate_it_cannot_resample():
    from onbeat.ear.features import FeatureExtractor
    with pytest.raises(OnbeatError, match="sample rate 2147483647 Hz"):
        FeatureExtractor(2_147_483_647)


@pytest.fixture
def as_nobody():
    """Run a block with the permissions of an unprivileged user (root reads every file whatever its mode)."""
    @contextlib.contextmanager
    def drop():
        if os.geteuid() != 0:
            yield
            return
        os.seteuid(65534)
        try:
            yield
        finally:
            os.seteuid(0)
    return drop


def test_an_unreadable_file_says_permission_denied(as_nobody):
    folder = Path(tempfile.mkdtemp())
    try:
        folder.chmod(0o755)
        path = folder / "locked.wav"
        soundfile.write(path, np.zeros(100, np.float32), 44100)
        path.chmod(0)
        with as_nobody(), pytest.raises(OnbeatError, match=f"{path}: Permission denied"):
            FileSource(path, play=False)
    finally:
        shutil.rmtree(folder)


def test_unknown_output_device_is_an_error(tmp_path, portaudio):
    soundfile.write(tmp_path / "a.wav", np.zeros(100, dtype=np.float32), 44100)
    with pytest.raises(OnbeatError, match="no audio output device"):
        FileSource(tmp_path / "a.wav", play=True, output_device="no such speaker")


# --- device ---------------------------------------------------------------------------------------------------

def test_ring_buffer_wraps_and_keeps_the_newest_frames():
    ring = RingBuffer(10, 1)
    data = np.arange(40, dtype=np.float32)[:, None]
    ring.write(data[:7])
    position, frames = ring.read_available()
    assert position == 0 and np.array_equal(frames, data[:7])
    ring.write(data[7:14])   # wraps around the end
    ring.write(data[14:25])  # the reader fell behind: 15..24 survive
    position, frames = ring.read_available()
    assert position == 15 and np.array_equal(frames, data[15:25]) and ring.dropped == 8
    ring.write(data[25:40])  # more than the ring in one write
    position, frames = ring.read_available()
    assert position == 30 and np.array_equal(frames, data[30:40]) and ring.dropped == 13
    assert len(ring.read_available()[1]) == 0


def test_missing_portaudio_is_explained(monkeypatch):
    real_import = builtins.__import__

    def import_without_portaudio(name, *args, **kwargs):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")   # what sounddevice raises without libportaudio2
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(builtins, "__import__", import_without_portaudio)
    with pytest.raises(OnbeatError, match=r"PortAudio library not found \(install libportaudio2\)"):
        import_sounddevice()


def test_unknown_input_device_lists_the_available_ones(portaudio):
    with pytest.raises(OnbeatError, match="no audio input device matches 'no such mic'; available input devices"):
        DeviceSource(device="no such mic")


@pytest.mark.slow
def test_jack_capture_hears_a_120_bpm_metronome(jack_server, tmp_path):
    jack_server.spawn(["jack_metro", "-n", "metro", "-b", "120", "-f", "1000", "-D", "30"])
    capture = jack_server.run_capture("capture", 3, tmp_path / "captured.npy")
    assert capture.stdout.readline().strip() == "capturing", capture.stderr.read()
    our_input = jack_server.wait_for_port(lambda port: port.startswith("PortAudio") and ":in" in port)
    jack_server.connect(jack_server.wait_for_port(lambda port: port.startswith("metro:")), our_input)
    summary = summary_of(capture)
    assert summary["sample_rate"] == SAMPLE_RATE and not summary["lost"]
    clicks = onsets(np.load(tmp_path / "captured.npy"), SAMPLE_RATE)
    assert len(clicks) >= 4
    # an xrun on a busy machine can cost a few 256-frame periods, hence the loose bound per interval
    assert np.median(np.diff(clicks)) == pytest.approx(0.5, abs=0.01)
    np.testing.assert_allclose(np.diff(clicks), 0.5, atol=0.05)


def test_jack_device_errors_and_fallbacks(jack_server):
    capture = jack_server.run_capture("probe")
    out, err = capture.communicate(timeout=30)
    assert capture.returncode == 0, err
    error, summary = out.strip().splitlines()[-2:]
    assert "no audio input device matches 'no such device'" in error
    assert "system (JACK Audio Connection Kit, 2 ch)" in error
    summary = json.loads(summary)
    assert summary["sample_rate"] == SAMPLE_RATE and "44100 Hz not supported" in summary["message"]
    assert summary["channels"] == 2


@pytest.mark.slow
def test_file_playback_is_paced_by_the_output_device(jack_server, tmp_path):
    path = tmp_path / "second.wav"
    soundfile.write(path, 0.1 * np.ones(SAMPLE_RATE, dtype=np.float32), SAMPLE_RATE)
    player = jack_server.run_capture("play", path)
    summary = summary_of(player)
    assert summary["playing"] and summary["frames"] == SAMPLE_RATE
    assert 0.7 < summary["seconds"] < 2.0


def test_file_plays_silently_without_an_output_device(tmp_path):
    try:
        speakers = any(device["max_output_channels"] > 0 for device in import_sounddevice().query_devices())
    except OnbeatError:  # no PortAudio library at all: silent as well
        speakers = False
    if speakers:
        pytest.skip("this machine has an output device")
    soundfile.write(tmp_path / "a.wav", np.zeros(1000, dtype=np.float32), 44100)
    source = FileSource(tmp_path / "a.wav", play=True, realtime=False)
    assert not source.playing and "playing silently" in source.message
    assert len(collect(source)[1]) == 1000


@pytest.mark.slow
def test_jack_server_killed_mid_capture_ends_the_source_cleanly(jack_server):
    capture = jack_server.run_capture("until-lost")
    assert capture.stdout.readline().strip() == "capturing", capture.stderr.read()
    time.sleep(0.5)
    jack_server.kill(jack_server.jackd)
    started = time.monotonic()
    summary = summary_of(capture, timeout=20)
    assert time.monotonic() - started < 10
    assert summary["lost"] and "stopped delivering audio" in summary["message"]
    assert summary["frames"] > 0.3 * SAMPLE_RATE
