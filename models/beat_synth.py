"""Synthetic songs with exact beat and downbeat labels, to train the beat activation network on data we own.

A song is a random style (rock, pop, disco, hip-hop, reggae, jazz, blues shuffle, country, latin, metal,
waltz, classical, ...), tempo, meter (4/4 or 3/4), swing, tempo map (steady, drifting, rubato or a jump at a bar),
key and chord progression. It is written as General MIDI (drums, bass, chords, a melody, with fills, accents,
drum-less intros and breaks, human timing) and rendered by Debian's `fluidsynth` with the `fluid-soundfont-gm`
soundfont (MIT). The labels are the tempo map's beats, so they are exact whatever the instruments do.

Only the training side imports this (it needs `mido` and the `fluidsynth` program).
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from onbeat.core.errors import OnbeatError

SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
TICKS_PER_SECOND = 960          # MIDI at a fixed 120 BPM, 480 ticks per quarter: one tick = 1/960 s

KICK, SNARE, RIM, CLAP, CLOSED_HAT, PEDAL_HAT, OPEN_HAT, CRASH, RIDE, RIDE_BELL, LOW_TOM, MID_TOM, HIGH_TOM = (
    36, 38, 37, 39, 42, 44, 46, 49, 51, 53, 45, 47, 50)
CONGA_HIGH, CONGA_LOW, COWBELL, CLAVES, SHAKER, TAMBOURINE = 62, 64, 56, 75, 70, 54

# drum patterns: per instrument, the hits as positions in beats within a 4/4 (or 3/4) bar; "8" positions at
# k + 0.5 are swung with the song's swing
PATTERNS = {
    "rock": {KICK: [0, 2, 2.5], SNARE: [1, 3], CLOSED_HAT: [0, .5, 1, 1.5, 2, 2.5, 3, 3.5]},
    "pop": {KICK: [0, 1.5, 2], SNARE: [1, 3], CLOSED_HAT: [0, .5, 1, 1.5, 2, 2.5, 3, 3.5], TAMBOURINE: [1, 3]},
    "disco": {KICK: [0, 1, 2, 3], CLAP: [1, 3], OPEN_HAT: [.5, 1.5, 2.5, 3.5], CLOSED_HAT: [0, 1, 2, 3]},
    "house": {KICK: [0, 1, 2, 3], CLAP: [1, 3], OPEN_HAT: [.5, 1.5, 2.5, 3.5], SHAKER: [.25, .75, 1.25, 1.75, 2.25, 2.75, 3.25, 3.75]},
    "hiphop": {KICK: [0, .75, 2.5], SNARE: [1, 3], CLOSED_HAT: [0, .5, 1, 1.5, 2, 2.5, 3, 3.5]},
    "reggae": {KICK: [2], RIM: [2], CLOSED_HAT: [.5, 1.5, 2.5, 3.5]},
    "jazz": {RIDE: [0, 1, 1.5, 2, 3, 3.5], PEDAL_HAT: [1, 3], KICK: [0]},
    "shuffle": {KICK: [0, 2], SNARE: [1, 3], CLOSED_HAT: [0, .5, 1, 1.5, 2, 2.5, 3, 3.5]},
    "country": {KICK: [0, 2], SNARE: [1, 3], CLOSED_HAT: [.5, 1.5, 2.5, 3.5], RIM: [.5, 1.5, 2.5, 3.5]},
    "latin": {CONGA_HIGH: [.5, 1, 2.5, 3], CONGA_LOW: [1.5, 3.5], CLAVES: [0, .75, 1.5, 2.5, 3], KICK: [0, 2], COWBELL: [0, 1, 2, 3]},
    "metal": {KICK: [0, .5, 1, 1.5, 2, 2.5, 3, 3.5], SNARE: [1, 3], CRASH: [0, 2]},
    "funk": {KICK: [0, .75, 2.25, 2.5], SNARE: [1, 3, 3.75], CLOSED_HAT: [0, .25, .5, .75, 1, 1.25, 1.5, 1.75, 2, 2.25, 2.5, 2.75, 3, 3.25, 3.5, 3.75]},
    "waltz": {KICK: [0], SNARE: [1, 2], CLOSED_HAT: [0, 1, 2]},
    "jazzwaltz": {RIDE: [0, 1, 1.5, 2], PEDAL_HAT: [1], KICK: [0]},
    "classical": {},
}
TRIPLE = {"waltz", "jazzwaltz"}
SWUNG = {"jazz", "shuffle", "jazzwaltz", "hiphop", "funk", "country"}
TEMPO = {  # BPM range per style (log-uniform)
    "rock": (90, 170), "pop": (80, 135), "disco": (105, 130), "house": (115, 132), "hiphop": (70, 105),
    "reggae": (65, 95), "jazz": (80, 220), "shuffle": (70, 140), "country": (85, 180), "latin": (85, 130),
    "metal": (90, 200), "funk": (85, 120), "waltz": (80, 190), "jazzwaltz": (90, 180), "classical": (55, 150),
}
# GM programs per part
BASSES = [32, 33, 34, 35, 36, 38, 39, 43]
CHORDS = [0, 1, 4, 5, 16, 17, 24, 25, 26, 27, 29, 30, 48, 49, 50, 52, 61, 62, 80, 81, 88, 89]
LEADS = [0, 11, 22, 24, 40, 41, 56, 57, 64, 65, 66, 71, 73, 80, 81]
CLASSICAL = [0, 6, 40, 41, 42, 43, 46, 48, 49, 68, 70, 71, 73]
PROGRESSIONS = [[0, 7, 9, 5], [0, 5, 7, 7], [9, 5, 0, 7], [0, 0, 5, 7], [0, 9, 5, 7], [2, 7, 0, 0], [0, 5, 0, 7],
                [0, 0, 0, 0, 5, 5, 0, 0, 7, 5, 0, 7]]


@dataclass
class Song:
    """A rendered song: mono audio at `rate` and its beats (s) with their position in the bar (1 = downbeat)."""
    audio: np.ndarray
    rate: int
    beats: np.ndarray
    positions: np.ndarray
    style: str


class _Score:
    """Notes on absolute times (s), written as one General MIDI file."""

    def __init__(self):
        self.events: list[tuple[float, int, list[int]]] = []   # (time, order, message bytes)
        self.channel_programs: dict[int, int] = {}

    def program(self, channel: int, program: int):
        self.channel_programs[channel] = program

    def note(self, channel: int, pitch: int, start: float, length: float, velocity: float):
        velocity = int(np.clip(velocity, 1, 127))
        start = max(start, 0.0)
        self.events.append((start, 1, [0x90 | channel, int(pitch), velocity]))
        self.events.append((start + max(length, 0.02), 0, [0x80 | channel, int(pitch), 0]))

    def write(self, path: Path, volumes: dict[int, int]):
        import mido
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("set_tempo", tempo=500000, time=0))
        for channel, program in self.channel_programs.items():
            if channel != 9:
                track.append(mido.Message("program_change", channel=channel, program=program, time=0))
            track.append(mido.Message("control_change", channel=channel, control=7, value=volumes.get(channel, 100), time=0))
        now = 0
        for time, _, message in sorted(self.events, key=lambda e: (e[0], e[1])):
            tick = int(round(time * TICKS_PER_SECOND))
            track.append(mido.Message.from_bytes(message, time=tick - now))
            now = tick
        midi = mido.MidiFile(ticks_per_beat=480)
        midi.tracks.append(track)
        midi.save(str(path))


def tempo_map(rng: np.random.Generator, bpm: float, beats: int, beats_per_bar: int, style: str) -> np.ndarray:
    """Times (s) of `beats` + 1 beats: steady, slowly drifting, rubato (classical) or one jump at a bar line."""
    kind = rng.choice(["steady", "drift", "jump"], p=[0.6, 0.3, 0.1])
    if style == "classical":
        kind = rng.choice(["steady", "drift", "rubato"], p=[0.3, 0.3, 0.4])
    periods = np.full(beats, 60.0 / bpm)
    if kind == "drift":
        periods *= np.exp(np.cumsum(rng.normal(0, 0.006, beats)) + np.linspace(0, rng.normal(0, 0.08), beats))
    elif kind == "rubato":
        bar_tempo = np.repeat(np.exp(rng.normal(0, 0.06, beats // beats_per_bar + 1)), beats_per_bar)[:beats]
        periods *= np.convolve(bar_tempo, np.ones(3) / 3, mode="same")
    elif kind == "jump":
        bar = beats_per_bar * int(rng.integers(3, max(4, beats // beats_per_bar - 2)))
        periods[bar:] *= rng.choice([0.75, 0.85, 1.15, 1.3])
    return np.concatenate([[0.0], np.cumsum(periods)])


def compose(rng: np.random.Generator, seconds: float, style: str | None = None) -> tuple[_Score, np.ndarray, np.ndarray, dict, str]:
    """A random song's score, its beat times and bar positions (1 = downbeat), channel volumes, and its style."""
    style = style or str(rng.choice(list(PATTERNS)))
    beats_per_bar = 3 if style in TRIPLE else 4
    low, high = TEMPO[style]
    bpm = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    n_beats = int(seconds * bpm / 60 * 1.2) + 2 * beats_per_bar
    offset = rng.uniform(0.0, 2.0)            # the music starts a little after the file
    times = offset + tempo_map(rng, bpm, n_beats, beats_per_bar, style)
    swing = rng.uniform(0.58, 0.68) if style in SWUNG and rng.random() < 0.8 else 0.5
    jitter = rng.uniform(0.002, 0.015)

    def at(position: float) -> float:
        """Time of a position in beats (fractional), swung, humanised."""
        beat, fraction = int(np.floor(position)), position - np.floor(position)
        if abs(fraction - 0.5) < 1e-6:
            fraction = swing
        elif abs(fraction - 0.75) < 1e-6 and swing > 0.5:
            fraction = swing + (1 - swing) / 2
        beat = min(beat, len(times) - 2)
        return times[beat] + fraction * (times[beat + 1] - times[beat]) + rng.normal(0, jitter)

    score = _Score()
    score.program(9, 0)
    bass_program, chord_program = int(rng.choice(BASSES)), int(rng.choice(CHORDS))
    lead_program = int(rng.choice(LEADS))
    if style == "classical":
        bass_program, chord_program, lead_program = (int(rng.choice([32, 42, 43, 0, 70])), int(rng.choice(CLASSICAL)),
                                                      int(rng.choice(CLASSICAL)))
    score.program(0, bass_program)
    score.program(1, chord_program)
    score.program(2, lead_program)
    volumes = {9: int(rng.integers(70, 127)), 0: int(rng.integers(70, 127)), 1: int(rng.integers(50, 110)),
               2: int(rng.integers(40, 110))}
    key = int(rng.integers(0, 12))
    progression = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    minor = rng.random() < 0.4
    pattern = PATTERNS[style]
    bars = n_beats // beats_per_bar - 1
    drumless = set()
    if rng.random() < 0.3:
        drumless |= set(range(int(rng.integers(1, 5))))             # intro without drums
    if rng.random() < 0.3:
        start = int(rng.integers(2, max(3, bars - 2)))
        drumless |= {start, start + 1}                               # a break
    chord_rhythm = rng.choice(["sustain", "beats", "offbeats", "arpeggio", "stabs"])
    if style == "reggae":
        chord_rhythm = "offbeats"
    if style == "classical":
        chord_rhythm = rng.choice(["sustain", "arpeggio", "beats"])
    bass_rhythm = rng.choice(["root", "beats", "eighths", "walking"]) if style != "jazz" else "walking"
    lead_density = rng.uniform(0.0, 0.8)
    scale = np.array([0, 2, 3, 5, 7, 8, 10] if minor else [0, 2, 4, 5, 7, 9, 11])
    for bar in range(bars):
        first = bar * beats_per_bar
        root = key + progression[bar % len(progression)]
        third = 3 if minor and progression[bar % len(progression)] in (0, 5) else 4
        chord = [root, root + third, root + 7]
        accent = rng.uniform(1.0, 1.25)   # the downbeat is played a little louder
        # drums
        if bar not in drumless:
            for drum, positions in pattern.items():
                for position in positions:
                    if position >= beats_per_bar or rng.random() < 0.04:
                        continue
                    velocity = rng.normal(90, 10) * (accent if position == 0 else 1.0)
                    score.note(9, drum, at(first + position), 0.1, velocity)
            if bar % 4 == 3 and rng.random() < 0.4 and style != "classical":      # a fill into the next phrase
                for k, position in enumerate(np.arange(beats_per_bar - 1, beats_per_bar, 0.25)):
                    score.note(9, [HIGH_TOM, MID_TOM, LOW_TOM, SNARE][k % 4], at(first + position), 0.1, rng.normal(95, 8))
            if bar % 4 == 0 and rng.random() < 0.5 and style not in ("classical", "jazz"):
                score.note(9, CRASH, at(first), 1.0, rng.normal(95, 10))
        # bass
        bass_root = 36 + root % 12
        if bass_rhythm == "root":
            score.note(0, bass_root, at(first), times[first + beats_per_bar] - times[first] - 0.05, 100 * accent)
        elif bass_rhythm in ("beats", "walking"):
            for k in range(beats_per_bar):
                pitch = bass_root if k == 0 else (bass_root + int(rng.choice([0, 2, 3, 4, 5, 7, 9, 10, 12])) if bass_rhythm == "walking"
                                                   else bass_root + [0, 7, 12, 7][k % 4])
                score.note(0, pitch, at(first + k), 0.9 * (times[first + 1] - times[first]), rng.normal(95, 8) * (accent if k == 0 else 1))
        else:
            for k in np.arange(0, beats_per_bar, 0.5):
                score.note(0, bass_root + (12 if k % 1 else 0), at(first + k), 0.4 * (times[first + 1] - times[first]), rng.normal(90, 8))
        # chords
        chord_pitches = [60 + (p - 60) % 12 if p < 60 else p for p in (48 + np.array(chord) % 12 + 12)]
        if chord_rhythm == "sustain":
            for pitch in chord_pitches:
                score.note(1, pitch, at(first), times[first + beats_per_bar] - times[first], rng.normal(75, 8))
        elif chord_rhythm in ("beats", "offbeats", "stabs"):
            positions = {"beats": range(beats_per_bar), "offbeats": np.arange(0.5, beats_per_bar, 1.0),
                         "stabs": [0, 1.5, 2.5] if beats_per_bar == 4 else [0, 1.5]}[chord_rhythm]
            for position in positions:
                for pitch in chord_pitches:
                    score.note(1, pitch, at(first + position), 0.3 * (times[first + 1] - times[first]), rng.normal(75, 8))
        else:
            step = rng.choice([0.5, 0.25]) if style != "classical" else rng.choice([0.5, 1 / 3, 0.25])
            for k, position in enumerate(np.arange(0, beats_per_bar, step)):
                pitch = chord_pitches[k % 3] + (12 if (k // 3) % 2 else 0)
                score.note(1, pitch, at(first + position), 2 * step * (times[first + 1] - times[first]), rng.normal(72, 8))
        # melody: scale notes on beats and eighths
        for position in np.arange(0, beats_per_bar, 0.5):
            if rng.random() < lead_density * (1.0 if position % 1 == 0 else 0.5):
                pitch = 72 + key % 12 + int(scale[rng.integers(len(scale))])
                score.note(2, pitch, at(first + position), rng.uniform(0.15, 0.6), rng.normal(80, 10))
    positions = np.arange(len(times)) % beats_per_bar + 1
    return score, times, positions, volumes, style


def render(score: _Score, volumes: dict, seconds: float, rate: int, gain: float = 0.5) -> np.ndarray:
    """The score rendered by fluidsynth at `rate`, mono float32, exactly `seconds` long."""
    import soundfile
    program = shutil.which("fluidsynth")
    if program is None or not SOUNDFONT.is_file():
        raise OnbeatError("synthesising training songs needs Debian's fluidsynth and fluid-soundfont-gm "
                          "(apt-get install fluidsynth fluid-soundfont-gm)")
    with tempfile.TemporaryDirectory() as folder:
        midi, wav = Path(folder) / "song.mid", Path(folder) / "song.wav"
        score.write(midi, volumes)
        subprocess.run([program, "-ni", "-q", "-g", str(gain), "-r", str(rate), "-F", str(wav), str(SOUNDFONT), str(midi)],
                       check=True, capture_output=True, timeout=600)
        audio, _ = soundfile.read(str(wav), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    length = int(seconds * rate)
    return np.pad(mono, (0, max(0, length - len(mono))))[:length]


def augment(rng: np.random.Generator, audio: np.ndarray, rate: int) -> np.ndarray:
    """Level, tilt EQ, a little noise and soft clipping: the recording chains the network must not care about."""
    from scipy.signal import butter, lfilter
    if rng.random() < 0.5:
        b, a = butter(1, rng.uniform(1500, 8000) / (rate / 2), "low")
        audio = lfilter(b, a, audio)
    if rng.random() < 0.3:
        b, a = butter(1, rng.uniform(60, 400) / (rate / 2), "high")
        audio = lfilter(b, a, audio)
    peak = np.max(np.abs(audio)) + 1e-9
    audio = audio / peak * 10 ** rng.uniform(-2.0, 0.0)
    if rng.random() < 0.3:
        audio = np.tanh(2.0 * audio) / np.tanh(2.0)
    audio = audio + rng.normal(0, 10 ** rng.uniform(-5, -2.5), len(audio))
    return audio.astype(np.float32)


def synthesize(seed: int, seconds: float = 30.0, rate: int = 22050, style: str | None = None) -> Song:
    """One random labelled song, deterministic for its seed."""
    rng = np.random.default_rng(seed)
    score, times, positions, volumes, style = compose(rng, seconds, style)
    audio = augment(rng, render(score, volumes, seconds, rate), rate)
    keep = times < seconds
    return Song(audio=audio, rate=rate, beats=times[keep], positions=positions[keep], style=style)
