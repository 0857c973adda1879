"""Audio sources: a sound device, a file (heard while analysed), or a generated drum pattern.

Every source is a context manager with `.sample_rate`, `.channels`, `.blocks()` (an iterator of `AudioBlock`)
and `.close()`. Block times are stream seconds of the block's first sample (0 = the first sample delivered).

- `DeviceSource`: any PortAudio input (microphone, line-in, a JACK port), captured in a child process whose
  chunks a reader thread copies into a preallocated ring buffer; `blocks()` drains it. Overflows are counted
  (`.xruns`), never fatal; an unplugged device or a vanished JACK server ends `blocks()` with `.lost` set and
  `.message` saying why, and `.reopen()` opens the device again (a fresh capture process).
- `FileSource`: any format libsndfile reads (wav, flac, ogg, mp3 with libsndfile >= 1.1), else decoded by
  ffmpeg through a pipe. Played on the output device while analysed (paced by the output stream, so the
  listener hears exactly what is analysed), or silent at real-time pace, or as fast as possible (offline).
- `SyntheticSource`: a deterministic drum pattern at a chosen BPM, the default on a machine with no sound card;
  `beat_times()` gives its ground-truth beats.
"""
import json
import logging
import os
import select
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TypeVar, cast

import numpy as np
import soundfile

from onbeat.core.errors import OnbeatError
from onbeat.ear.capture import CHUNK_HEADER
from onbeat.ear.devices import open_output

logger = logging.getLogger(__name__)

BLOCK = 1024            # frames per block a source yields by default (23 ms at 44.1 kHz)
CLIP_LEVEL = 0.999      # a sample this loud counts as clipped
LOST_AFTER_S = 2.0      # a running stream that delivers nothing for this long is treated as lost
OPEN_TIMEOUT_S = 10.0  # how long a capture process may take to open its device
POLL_S = 0.005          # how often an idle DeviceSource.blocks() looks at its ring buffer
SAMPLE_RATES = (1000, 768000)   # Hz onbeat analyses: 1 kHz telephone-grade .. 768 kHz studio converters
MAX_CHANNELS = 1024     # libsndfile's own limit


def check_format(sample_rate, channels, what):
    """OnbeatError unless `sample_rate` (Hz) and `channels` are something onbeat can analyse: a header claiming
    2 GHz would otherwise ask the resampler for hundreds of GiB."""
    low, high = SAMPLE_RATES
    if not low <= sample_rate <= high:
        raise OnbeatError(f"{what}: sample rate {sample_rate} Hz is outside {low}..{high} Hz")
    if not 1 <= channels <= MAX_CHANNELS:
        raise OnbeatError(f"{what}: {channels} channels (1..{MAX_CHANNELS} are readable)")


@dataclass(frozen=True)
class AudioBlock:
    samples: np.ndarray     # float32 (n, channels)
    time: float             # stream seconds of the first sample
    sample_rate: int


SourceT = TypeVar("SourceT", bound="Source")


class Source:
    """Where the music comes from: a file, a sound device, the synthetic demo track.

    Threading: the engine iterates `blocks()` on its analysis thread. A live source yields blocks as the audio
    arrives (in real time: a source reading faster than real time would put the beats ahead of the sound); a
    file source paces itself. When a device goes away mid-stream, `blocks()` ends with `lost` set and `message`
    saying why; the engine then calls `reopen()` (raising OnbeatError while it is still gone) every second and
    iterates `blocks()` again. `close()` may be called from any thread and ends `blocks()`."""
    sample_rate: int
    channels: int
    lost: bool = False  # the stream ended because the device went away (not because the music did)
    message: str = ""  # what the source wants the user to know (a fallback it took, why it was lost)

    def blocks(self) -> Iterator[AudioBlock]:
        raise NotImplementedError

    def reopen(self) -> None:
        """Open the device again after it was lost; OnbeatError while it is still gone."""
        raise OnbeatError(f"{type(self).__name__} cannot be reopened")

    def close(self) -> None:
        pass

    def __enter__(self: SourceT) -> SourceT:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[AudioBlock]:
        return self.blocks()


class Pacer:
    """Sleeps so that blocks come out at real-time pace by the monotonic clock."""

    def __init__(self, sample_rate):
        self.sample_rate = sample_rate
        self.start = None

    def wait(self, frames_done):
        """Block until `frames_done` frames' worth of time has passed since the first call (which may come
        mid-stream: a file whose output device failed goes on at real-time pace from there)."""
        now = time.monotonic()
        if self.start is None:
            self.start = now - frames_done / self.sample_rate
        delay = self.start + frames_done / self.sample_rate - now
        if delay > 0:
            time.sleep(delay)


class RingBuffer:
    """Single-producer/single-consumer ring of float32 frames. The producer (the thread reading the capture
    process) only copies and bumps its counter, never waits for the consumer; when the consumer falls a whole
    ring behind, the oldest frames are overwritten (live audio wants the newest sound) and the consumer counts
    them as dropped."""

    def __init__(self, frames, channels):
        self.data = np.zeros((frames, channels), dtype=np.float32)
        self.size = frames
        self.written = 0    # frames ever written (only the producer changes it)
        self.read = 0       # frames ever read (only the consumer changes it)
        self.dropped = 0    # frames overwritten before they were read

    def write(self, frames):
        total = len(frames)
        frames = frames[-self.size:]            # a write longer than the ring keeps its end
        n, start = len(frames), (self.written + total - len(frames)) % self.size
        first = min(n, self.size - start)
        self.data[start:start + first] = frames[:first]
        self.data[:n - first] = frames[first:]
        self.written += total

    def read_available(self):
        """(stream position of the first frame, a copy of the frames written and not yet read)."""
        end = self.written
        begin = max(self.read, end - self.size)
        self.dropped += begin - self.read
        start, n = begin % self.size, end - begin
        frames = np.concatenate([self.data[start:start + n], self.data[:max(0, start + n - self.size)]])
        self.read = end
        return begin, frames


class DeviceSource(Source):
    """Live input from a PortAudio device, selected by index, name substring, or None for the default.

    `block` is the callback size in frames (0: the host's choice). `sample_rate=None` takes the device's
    default rate; a rate the device refuses falls back to its default, with a warning in `.message`. Counters:
    `.xruns` (PortAudio status flags), `.ring.dropped` (frames lost because the reader fell `buffer_s` behind),
    `.clipped` (samples at full scale). Block times count every frame the device delivered, dropped ones too.
    `.lost` is set when the device goes away; `blocks()` then ends, and `.reopen()` may be tried (block times
    go on from where they stopped).

    PortAudio runs in a capture process (`onbeat.ear.capture`), whose chunks a reader thread copies into the
    ring: after a JACK server dies PortAudio can be neither closed nor restarted in its process, so a lost
    device's process is killed and `.reopen()` starts a fresh one.
    """

    def __init__(self, device: str | int | None = None, sample_rate: int | None = None, channels: int = 1,
                 block: int = 0, buffer_s: float = 2.0) -> None:
        self.request = ("" if device is None else str(device), str(sample_rate or 0), str(int(channels)), str(block))
        self.xruns = 0
        self.clipped = 0
        self._open()
        self.ring = RingBuffer(int(buffer_s * self.sample_rate), self.channels)
        self._reader.start()

    @property
    def _pipe(self) -> IO[bytes]:
        """The capture process's stdout (always a pipe)."""
        assert self.process.stdout is not None
        return self.process.stdout

    def _open(self):
        """Start a capture process and read its header; OnbeatError when it cannot capture."""
        self.lost = self.closing = False
        env = {**os.environ, "JACK_NO_START_SERVER": "1"}  # never autostart a JACK server of our own
        self.process = subprocess.Popen([sys.executable, "-m", "onbeat.ear.capture", *self.request], env=env,
                                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        answered, _, _ = select.select([self._pipe], [], [], OPEN_TIMEOUT_S)
        try:
            header = json.loads(self._pipe.readline() if answered else b"")
        except ValueError:
            header = {"error": f"cannot open audio input '{self.request[0] or 'default'}': the capture process "
                               f"did not answer within {OPEN_TIMEOUT_S:.0f} s"}
        if "error" not in header and hasattr(self, "ring") and (header["sample_rate"], header["channels"]) != (
                self.sample_rate, self.channels):  # a reopened device must fit the ring and the stream's timeline
            header["error"] = (f"audio input '{header['device_name']}' came back at {header['sample_rate']} Hz, "
                               f"{header['channels']} ch instead of {self.sample_rate} Hz, {self.channels} ch")
        if "error" in header:
            self._kill()
            self._pipe.close()
            raise OnbeatError(header["error"])
        self.device_name = header["device_name"]
        self.sample_rate, self.channels = header["sample_rate"], header["channels"]
        self.message = header["message"]
        if self.message:
            logger.warning(self.message)
        self._reader = threading.Thread(target=self._read_chunks, args=(self.process,), daemon=True,
                                        name="onbeat-capture")

    def _read_chunks(self, process):
        """Reader thread: the capture process's chunks into the ring; end of the pipe = the device is lost."""
        with process.stdout as pipe:
            while header := pipe.read(CHUNK_HEADER.size):
                frames, status = CHUNK_HEADER.unpack(header)
                data = pipe.read(frames * self.channels * 4)
                if len(data) < frames * self.channels * 4:
                    break
                self.xruns += status != 0
                self.ring.write(np.frombuffer(data, np.float32).reshape(frames, self.channels))
        if process is self.process and not self.closing:
            self.lost = True

    def reopen(self):
        """Open the device again after it was lost (same device, rate and channels)."""
        self.close()
        self._open()
        self._reader.start()

    def blocks(self):
        last_data = time.monotonic()
        while True:
            position, samples = self.ring.read_available()
            if len(samples):
                last_data = time.monotonic()
                self.clipped += int(np.count_nonzero(np.abs(samples) >= CLIP_LEVEL))
                yield AudioBlock(samples, position / self.sample_rate, self.sample_rate)
                continue
            if self.closing:
                return
            if self.lost or time.monotonic() - last_data > LOST_AFTER_S:
                self.lost = True
                self.message = f"audio input '{self.device_name}' stopped delivering audio (unplugged or server gone)"
                logger.warning(self.message)
                return
            time.sleep(POLL_S)

    def _kill(self):
        if self.process.poll() is None:
            self.process.kill()  # SIGKILL: PortAudio in there may be stuck on a dead server
        self.process.wait()

    def close(self):
        self.closing = True
        self._kill()
        self._reader.join(timeout=1.0)  # the pipe has ended: the reader is finishing its last chunk


# --- files -------------------------------------------------------------------------------------------------

class FfmpegReader:
    """Decodes a file ffmpeg understands to float32 through a pipe; the `read`/`close` subset of SoundFile."""

    def __init__(self, path, reason):
        probe = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
                                "stream=sample_rate,channels", "-of", "csv=p=0", str(path)],
                               capture_output=True, text=True)
        fields = probe.stdout.strip().split(",")
        if probe.returncode or len(fields) != 2:
            raise OnbeatError(f"{path}: cannot read audio ({reason})") from None
        try:
            self.samplerate, self.channels = int(fields[0]), int(fields[1])
        except ValueError:
            raise OnbeatError(f"{path}: cannot read audio ({reason})") from None
        check_format(self.samplerate, self.channels, path)
        self.process = subprocess.Popen(["ffmpeg", "-v", "error", "-i", str(path), "-f", "f32le", "-"],
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.pipe = cast(IO[bytes], self.process.stdout)  # stdout=PIPE

    def read(self, frames, dtype="float32", always_2d=True):
        data = self.pipe.read(frames * self.channels * 4)
        data = data[:len(data) // (4 * self.channels) * 4 * self.channels]
        return np.frombuffer(data, dtype=np.float32).reshape(-1, self.channels)

    def close(self):
        self.process.kill()
        self.process.wait()


def open_audio(path):
    """A reader with `.samplerate`, `.channels`, `.read(frames, dtype, always_2d)`, `.close()` for `path`:
    libsndfile when it knows the format (wav, flac, ogg, mp3, ...), else ffmpeg (m4a, aac, opus, ...).
    Missing, empty or unreadable files raise OnbeatError."""
    path = Path(path)
    if not path.is_file():
        raise OnbeatError(f"{path}: no such audio file")
    try:
        path.open("rb").close()  # libsndfile says only "System error." for a file it may not read
    except OSError as e:
        raise OnbeatError(f"{path}: {e.strerror or e}") from None
    try:
        reader = soundfile.SoundFile(str(path))
    except (soundfile.LibsndfileError, RuntimeError) as e:
        reason = str(e).split(":")[-1].strip() or "unreadable"
        if not shutil.which("ffmpeg") or path.stat().st_size == 0:
            raise OnbeatError(f"{path}: cannot read audio ({reason})") from None
        logger.debug("%s: libsndfile cannot read it, decoding with ffmpeg", path)
        return FfmpegReader(path, reason)
    try:
        check_format(reader.samplerate, reader.channels, path)
        if reader.frames == 0:
            raise OnbeatError(f"{path}: the file contains no audio")
    except OnbeatError:
        reader.close()
        raise
    return reader


def read_audio(path):
    """The whole file: (float32 (n, channels), sample_rate)."""
    reader = open_audio(path)
    chunks = []
    try:
        while (chunk := _read(reader, path, 1 << 16)) is not None:
            chunks.append(chunk)
    finally:
        reader.close()
    if not chunks:
        raise OnbeatError(f"{path}: the file contains no audio")
    return np.concatenate(chunks), reader.samplerate


def _read(reader, path, frames):
    """The next chunk of float32 frames, None at the end; decoding errors become OnbeatError."""
    try:
        chunk = reader.read(frames, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError) as e:
        raise OnbeatError(f"{path}: corrupt audio ({e})") from None
    return chunk if len(chunk) else None


class FileSource(Source):
    """Streams a file as blocks: `play=True` also plays it on the output device (which then sets the pace);
    `realtime=False` yields as fast as possible (offline analysis)."""

    def __init__(self, path: str | Path, play: bool = True, realtime: bool = True,
                 output_device: str | int | None = None, block: int = BLOCK) -> None:
        self.path = Path(path)
        self.reader = open_audio(self.path)
        self.sample_rate, self.channels = int(self.reader.samplerate), int(self.reader.channels)
        self.block, self.realtime = block, realtime
        self.message = ""   # why the file is not heard, when it is not
        self.output = self._open_output(output_device) if play else None
        # close() may come from another thread while blocks() reads or plays: then blocks() releases the file
        # and the output itself once the block in hand is done, instead of having them closed under it.
        self._lock = threading.Lock()
        self._reading = self._closing = False

    @property
    def playing(self):
        return self.output is not None

    def _open_output(self, device):
        """An output stream on `device`, or None (with a warning) when this machine cannot play sound."""
        try:
            return open_output(self.sample_rate, self.channels, device)
        except OnbeatError as e:
            if device is not None:
                raise
            self.message = f"{self.path}: playing silently: {e}"
        logger.warning(self.message)
        return None

    def blocks(self):
        pacer = Pacer(self.sample_rate)
        frames = 0
        with self._lock:
            self._reading = not self._closing
        try:
            while self._reading and not self._closing and (
                    samples := _read(self.reader, self.path, self.block)) is not None:
                if self.output is not None:
                    self._play(samples)
                if self.output is None and self.realtime:
                    pacer.wait(frames)
                yield AudioBlock(samples, frames / self.sample_rate, self.sample_rate)
                frames += len(samples)
        finally:
            with self._lock:
                self._reading = False
                if self._closing:
                    self._release()

    def _play(self, samples):
        """Write to the output; blocks while the device's buffer is full, so the device clock paces the
        analysis. A device that fails mid-file (unplugged) leaves the rest to be analysed silently."""
        assert self.output is not None  # the caller checked
        try:
            self.output.write(samples)
        except Exception as e:  # noqa: BLE001 - PortAudio errors are untyped
            self.message = f"{self.path}: playing silently: the output device failed ({e})"
            logger.warning(self.message)
            self.output = None

    def close(self):
        with self._lock:
            self._closing = True
            if not self._reading:
                self._release()

    def _release(self):
        if self.output is not None:
            self.output.close()
            self.output = None
        self.reader.close()


# --- synthetic drums ---------------------------------------------------------------------------------------

BASS_LINE_HZ = (55.0, 43.65, 65.41, 49.0)   # A1, F1, C2, G1: one note per bar, a four-bar loop


def _decaying(kind, seconds, sample_rate, rng, pitch_hz=0.0):
    """One drum/bass hit: a short synthesised sound (float64)."""
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    if kind == "kick":      # pitch sweep 150 -> 50 Hz, fast decay
        sweep = 2 * np.pi * (50 * t + 100 * (1 - np.exp(-t * 30)) / 30)
        return 0.9 * np.sin(sweep) * np.exp(-t * 12)
    if kind == "snare":     # noise burst plus a 190 Hz body
        return (0.5 * rng.standard_normal(len(t)) + 0.3 * np.sin(2 * np.pi * 190 * t)) * np.exp(-t * 25)
    if kind == "hat":       # high-passed noise (first difference), very short
        noise = np.diff(rng.standard_normal(len(t) + 1))
        return 0.12 * noise * np.exp(-t * 80)
    return 0.35 * np.sin(2 * np.pi * pitch_hz * t) * np.exp(-t * 1.5)   # bass


class SyntheticSource(Source):
    """A generated drum loop: kick on beats 1 and 3, snare on 2 and 4, hi-hats on eighths, a bass note per bar.

    Deterministic for a given (bpm, seed, sample_rate); `seconds=None` runs forever."""

    def __init__(self, bpm: float = 120.0, seconds: float | None = None, realtime: bool = True, seed: int = 0,
                 sample_rate: int = 44100, block: int = BLOCK) -> None:
        if not 20 <= bpm <= 400:
            raise OnbeatError(f"synthetic source: bpm {bpm} is outside 20..400")
        self.bpm, self.seconds, self.realtime = float(bpm), seconds, realtime
        self.sample_rate, self.channels, self.block = int(sample_rate), 1, block
        self.loop, self.hit_offsets = self._render_loop(np.random.default_rng(seed))

    def _render_loop(self, rng, bars=4):
        """Four bars of audio (float32) and the sample offsets of its beats."""
        beat = 60.0 / self.bpm
        length = int(round(bars * 4 * beat * self.sample_rate))
        loop = np.zeros(length + 2 * self.sample_rate)      # room for the last hits' tails, folded back below
        beats = np.round(np.arange(bars * 4) * beat * self.sample_rate).astype(int)

        def add(sound, at):
            loop[at:at + len(sound)] += sound

        for i, at in enumerate(beats):
            accent = 1.0 if i % 4 == 0 else 0.6     # the downbeat's kick is the loudest hit of the bar
            add(accent * _decaying("kick" if i % 2 == 0 else "snare", 0.3, self.sample_rate, rng), at)
            if i % 4 == 0:
                add(_decaying("bass", 4 * beat, self.sample_rate, rng, BASS_LINE_HZ[i // 4 % 4]), at)
        for at in np.round(np.arange(bars * 8) * beat / 2 * self.sample_rate).astype(int):
            add(_decaying("hat", 0.05, self.sample_rate, rng), at)
        tail = loop[length:]
        loop = loop[:length]
        loop[:len(tail)] += tail[:length]   # wrap the tails so the loop repeats seamlessly
        return np.clip(loop, -1, 1).astype(np.float32), beats

    def beat_times(self, seconds):
        """The true beat times (s) in the first `seconds` of the stream."""
        loops = int(np.ceil(seconds * self.sample_rate / len(self.loop))) + 1
        starts = np.arange(loops)[:, None] * len(self.loop) + self.hit_offsets[None, :]
        times = starts.reshape(-1) / self.sample_rate
        return times[times < seconds]

    def blocks(self):
        total = None if self.seconds is None else int(round(self.seconds * self.sample_rate))
        pacer = Pacer(self.sample_rate)
        frames = 0
        while total is None or frames < total:
            n = self.block if total is None else min(self.block, total - frames)
            index = (frames + np.arange(n)) % len(self.loop)
            if self.realtime:
                pacer.wait(frames)
            yield AudioBlock(self.loop[index][:, None], frames / self.sample_rate, self.sample_rate)
            frames += n
