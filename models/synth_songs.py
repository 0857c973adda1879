"""Synthesized songs with exact beats and bars, for training the ear's beat activation (`onbeat train-beats --synth`).

Each song is drawn from its seed: a tempo (half of them 52-95 BPM, where networks trained on real music alone fire on
the eighths: issue 17), three or four beats to the bar, a drum style, hi-hats, swing, a steady or drifting tempo, a
chord progression, bass, chord and melody patterns and General MIDI instruments. It is written as MIDI and rendered
by fluidsynth with Debian's GM soundfont (`fluid-soundfont-gm`, MIT licensed), so its beat times are known to the
sample, as no annotator can give them. Deterministic for a seed.
"""
import shutil
import subprocess
from pathlib import Path

import mido
import numpy as np
import soundfile

from onbeat.core.errors import OnbeatError

SOUNDFONTS = (Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"), Path("/usr/share/sounds/sf2/default-GM.sf2"))
RATE = 22050          # Hz, the ear's analysis rate
SECONDS = 30.0        # as long as a gtzan-dev clip
TICKS = 480           # MIDI ticks per beat
INSTALL_HINT = "install fluidsynth and a GM soundfont (Debian: apt-get install fluidsynth fluid-soundfont-gm)"

# General MIDI drum notes (channel 10)
KICK, STICK, SNARE, CLAP, HAT, PEDAL_HAT, OPEN_HAT, CRASH, RIDE, TAMBOURINE, CONGA, SHAKER = (
    36, 37, 38, 39, 42, 44, 46, 49, 51, 54, 63, 70)
DRUMS, BASS, CHORDS, LEAD = 9, 0, 1, 2   # MIDI channels
SCALES = {"major": [0, 2, 4, 5, 7, 9, 11], "minor": [0, 2, 3, 5, 7, 8, 10], "dorian": [0, 2, 3, 5, 7, 9, 10]}
# General MIDI programs: basses; pianos, organs, guitars, strings, brass and pads; leads (flute, sax, vibes, ...)
BASS_PROGRAMS = [32, 33, 34, 35, 36, 38, 39]
CHORD_PROGRAMS = [0, 1, 2, 4, 5, 16, 17, 19, 24, 25, 26, 27, 29, 48, 49, 50, 52, 61, 88, 89, 91]
LEAD_PROGRAMS = [0, 11, 12, 22, 40, 56, 57, 64, 65, 66, 71, 73, 80, 81, 104, 105]
STYLES = {4: {"rock": 3, "halftime": 2, "disco": 2, "onedrop": 1, "funk": 2, "jazz": 1.5, "shuffle": 1.5,
              "percussion": 1, "none": 1.5},
          3: {"waltz": 3, "rock": 1, "jazz": 1, "percussion": 1, "none": 2}}
SWUNG_STYLES = ("jazz", "shuffle")   # their off-beats are written at 2/3 of the beat already


def soundfont():
    """The GM soundfont to render with."""
    if shutil.which("fluidsynth") is None:
        raise OnbeatError(f"synthesized songs need fluidsynth: {INSTALL_HINT}")
    for path in SOUNDFONTS:
        if path.is_file():
            return path
    raise OnbeatError(f"synthesized songs need a GM soundfont ({SOUNDFONTS[0]}): {INSTALL_HINT}")


def drum_bar(style, beats_per_bar, rng):
    """One bar of a drum style: [(beat position in the bar, GM drum note, velocity)]; hi-hats are added apart."""
    b, hits = beats_per_bar, []
    if style == "rock":   # kick on 1 and 3, snare on 2 and 4, sometimes a pickup kick
        hits += [(i, KICK if i % 2 == 0 else SNARE, 100) for i in range(b)]
        if rng.random() < 0.5:
            hits.append((b - 1.5 if b == 4 else 1.5, KICK, 80))
    elif style == "halftime":   # the snare on 3: heard at half the tempo unless the rest says otherwise
        hits += [(0, KICK, 105), (b / 2 if b == 4 else 2, SNARE, 100)]
        if rng.random() < 0.6:
            hits.append((rng.choice([1.5, 2.5, 3.5]) if b == 4 else 1.5, KICK, 80))
    elif style == "disco":   # four on the floor, open hats on the off-beats, claps on 2 and 4
        for i in range(b):
            hits += [(i, KICK, 105), (i + 0.5, OPEN_HAT, 70)]
            if i % 2 == 1:
                hits.append((i, CLAP if rng.random() < 0.5 else SNARE, 95))
    elif style == "onedrop":   # reggae: kick and rim together on 3, nothing on 1
        hits += [(b / 2 if b == 4 else 1, KICK, 100), (b / 2 if b == 4 else 1, STICK, 90)]
    elif style == "funk":   # kick on 1 and two random sixteenths, snare backbeat, ghost notes
        for position in sorted({0, *rng.choice(np.arange(0.25, b, 0.25), 2, replace=False)}):
            hits.append((float(position), KICK, 95))
        hits += [(i, SNARE, 105) for i in range(1, b, 2)]
        hits += [(float(ghost), SNARE, 35) for ghost in rng.choice(np.arange(0.25, b, 0.5), 2, replace=False)]
    elif style == "jazz":   # ride on every beat and a skip note after 2 and 4, hi-hat pedal on 2 and 4
        for i in range(b):
            hits.append((i, RIDE, 85))
            if i % 2 == 1:
                hits += [(i, PEDAL_HAT, 70), (i + 2 / 3, RIDE, 65)]
        if rng.random() < 0.3:
            hits.append((0, KICK, 50))
    elif style == "waltz":   # kick on 1, light snare or hat on 2 and 3
        hits.append((0, KICK, 100))
        hits += [(i, SNARE if rng.random() < 0.5 else HAT, 70) for i in range(1, b)]
    elif style == "shuffle":   # backbeat with hats on the beat and the third triplet
        for i in range(b):
            hits += [(i, KICK if i % 2 == 0 else SNARE, 100), (i, HAT, 80), (i + 2 / 3, HAT, 60)]
    elif style == "percussion":   # no kit: shaker and tambourine, an occasional conga
        for i in range(b):
            hits += [(i, TAMBOURINE if i % 2 else SHAKER, 70), (i + 0.5, SHAKER, 55)]
            if rng.random() < 0.3:
                hits.append((i + 0.75, CONGA, 60))
    return hits


def swung(position, ratio):
    """A position in beats with its off-beat eighth moved to `ratio` of the beat (0.5: straight)."""
    whole = np.floor(position)
    f = position - whole
    return whole + (f / 0.5 * ratio if f < 0.5 else ratio + (f - 0.5) / 0.5 * (1 - ratio))


def compose(seed, seconds=SECONDS):
    """Song `seed` -> (its MIDI file, (beats, 2) table of beat times in s and positions in the bar (1 = downbeat),
    a dict that describes it)."""
    rng = np.random.default_rng(seed)
    bpm = rng.uniform(52, 95) if rng.random() < 0.5 else rng.uniform(95, 190)
    beats_per_bar = 3 if rng.random() < 0.2 else 4
    styles = STYLES[beats_per_bar]
    weights = np.array(list(styles.values()))
    style = list(styles)[rng.choice(len(styles), p=weights / weights.sum())]
    swing = 2 / 3 if style in SWUNG_STYLES else rng.choice([0.5, 0.5, 0.5, rng.uniform(0.55, 0.68)])
    hats = rng.choice(["eighths", "sixteenths", "quarters", "off", "none"], p=[0.4, 0.2, 0.15, 0.1, 0.15])
    if style in ("jazz", "none", "percussion", "shuffle"):
        hats = "none"
    drift = rng.choice(["steady", "steady", "drift"])   # a third of the songs wander in tempo, as players do
    beat_count = int(seconds * bpm / 60) + 8
    beat_bpm = np.full(beat_count, bpm)
    if drift == "drift":
        beat_bpm = bpm * (1 + np.cumsum(rng.normal(0, 0.004, beat_count)))
    lead_in = rng.uniform(0.0, 1.0)   # seconds of silence before the first beat
    root = int(rng.integers(40, 52))
    scale = SCALES[rng.choice(list(SCALES))]
    degrees = [0, 3, 4, 5, 1, 2]   # I, IV, V, vi, ii, iii
    progression = [int(rng.choice(degrees[:4] if i == 0 else degrees)) for i in range(4)]
    progression[0] = 0   # a progression starts at home (the draw above stays, so every seed's song stays the same)
    chord_beats = rng.choice([beats_per_bar, beats_per_bar, 2 * beats_per_bar,
                              beats_per_bar / 2 if beats_per_bar == 4 else beats_per_bar])   # a chord lasts this long
    bass_pattern = rng.choice(["roots", "root_fifth", "eighths", "syncopated", "long"])
    chord_pattern = rng.choice(["held", "beats", "offbeats", "arpeggio", "charleston"])
    if style == "onedrop":
        chord_pattern = "offbeats"   # the reggae skank
    programs = {BASS: int(rng.choice(BASS_PROGRAMS)), CHORDS: int(rng.choice(CHORD_PROGRAMS)),
                LEAD: int(rng.choice(LEAD_PROGRAMS))}
    with_bass, with_lead = rng.random() < 0.85, rng.random() < 0.6
    notes = []   # (beat position, channel, note, velocity, duration in beats)
    intro_bars = int(rng.choice([0, 0, 1, 2]))   # drums and melody come in late, the bass half as late

    def chord_at(beat):
        degree = progression[int(beat // chord_beats) % 4]
        return [root + 12 + scale[(degree + k) % 7] + 12 * ((degree + k) // 7) for k in (0, 2, 4)]

    def play(position, channel, note, velocity, duration):
        notes.append((position, channel, int(note), int(np.clip(velocity * rng.uniform(0.85, 1.1), 1, 127)),
                      duration))

    for bar in range(beat_count // beats_per_bar):
        start = bar * beats_per_bar
        if style != "none" and bar >= intro_bars:
            for position, note, velocity in drum_bar(style, beats_per_bar, rng):
                play(start + (position if style in SWUNG_STYLES else swung(position, swing)), DRUMS, note, velocity,
                     0.2)
            step = {"eighths": 0.5, "sixteenths": 0.25, "quarters": 1.0}.get(hats)
            for position in np.arange(0, beats_per_bar, step) if step else ():
                play(start + swung(position, swing), DRUMS, HAT, 75 if position % 1 == 0 else 55, 0.1)
            for position in np.arange(0.5, beats_per_bar, 1.0) if hats == "off" else ():
                play(start + swung(position, swing), DRUMS, OPEN_HAT, 70, 0.3)
            if bar % 4 == 0 and rng.random() < 0.5:
                play(start, DRUMS, CRASH, 90, 1.0)
        if with_bass and bar >= intro_bars // 2:
            for beat in range(beats_per_bar):
                _bass(play, bass_pattern, start + beat, beat, chord_at(start + beat)[0] - 24, beats_per_bar, swing,
                      rng)
        for beat in range(beats_per_bar):
            _chords(play, chord_pattern, start + beat, beat, chord_at(start + beat), chord_beats, swing)
        if with_lead and bar >= intro_bars and rng.random() < 0.8:   # a melody on the scale, rests now and then
            position = 0.0
            while position < beats_per_bar:
                duration = float(rng.choice([0.5, 0.5, 1.0, 1.5, 0.25, 2.0]))
                if rng.random() < 0.8:
                    degree = int(rng.integers(0, 8))
                    play(start + swung(position, swing), LEAD, root + 24 + scale[degree % 7] + 12 * (degree // 7),
                         80, duration * 0.9)
                position += duration
    midi, lead_in_seconds = _midi(notes, programs, beat_bpm, lead_in, bpm, rng)
    times = lead_in_seconds + np.concatenate([[0.0], np.cumsum(60.0 / beat_bpm)])[:beat_count]
    keep = times < seconds
    table = np.stack([times[keep], (np.arange(beat_count) % beats_per_bar + 1)[keep]], axis=1)
    about = {"bpm": round(float(bpm), 1), "beats_per_bar": beats_per_bar, "style": style,
             "swing": round(float(swing), 2), "hats": str(hats), "tempo": str(drift), "bass": str(bass_pattern),
             "chords": str(chord_pattern)}
    return midi, table, about


def _bass(play, pattern, position, beat, note, beats_per_bar, swing, rng):
    if pattern == "roots":
        play(position, BASS, note, 100, 0.9)
    elif pattern == "root_fifth":
        play(position, BASS, note if beat % 2 == 0 else note + 7, 100, 0.9)
    elif pattern == "eighths":
        play(position, BASS, note, 100, 0.45)
        play(position + swung(0.5, swing), BASS, note, 80, 0.45)
    elif pattern == "syncopated":
        if beat == 0:
            play(position, BASS, note, 105, 1.4)
        elif rng.random() < 0.5:
            play(position + swung(0.5, swing), BASS, note + int(rng.choice([0, 7, 12, 10])), 85, 0.4)
    elif pattern == "long" and beat == 0:
        play(position, BASS, note, 100, beats_per_bar - 0.1)


def _chords(play, pattern, position, beat, chord, chord_beats, swing):
    if pattern == "held" and position % chord_beats == 0:
        for note in chord:
            play(position, CHORDS, note, 70, chord_beats - 0.05)
    elif pattern == "beats":
        for note in chord:
            play(position, CHORDS, note, 75 if beat else 85, 0.8)
    elif pattern == "offbeats":   # a reggae skank or a pumping off-beat
        for note in chord:
            play(position + swung(0.5, swing), CHORDS, note, 75, 0.35)
    elif pattern == "arpeggio":
        for k, fraction in enumerate((0.0, 0.5)):
            play(position + swung(fraction, swing), CHORDS, chord[(beat * 2 + k) % 3] + 12, 70, 0.45)
    elif pattern == "charleston" and beat == 0:
        for note in chord:
            play(position, CHORDS, note, 85, 1.2)
            play(position + 1.5, CHORDS, note, 75, 0.4)


def _midi(notes, programs, beat_bpm, lead_in, bpm, rng):
    """The notes as a one-track MIDI file with one tempo per beat, after a lead-in beat of silence; humanised by a
    random timing jitter (up to 12 ms) -> (the file, the lead-in's length in s)."""
    lead_in_tempo = mido.bpm2tempo(60.0 / max(lead_in, 0.05))
    events = [(0, 0, mido.MetaMessage("set_tempo", tempo=lead_in_tempo))]
    events += [((i + 1) * TICKS, 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo)))
               for i, tempo in enumerate(beat_bpm)]
    events += [(0, 1, mido.Message("program_change", channel=channel, program=program))
               for channel, program in programs.items()]
    jitter = rng.uniform(0, 0.012)
    for position, channel, note, velocity, duration in notes:
        tick = max(TICKS, TICKS + int(round((position + rng.normal(0, jitter * bpm / 60)) * TICKS)))
        events.append((tick, 2, mido.Message("note_on", channel=channel, note=note, velocity=velocity)))
        events.append((tick + max(1, int(duration * TICKS)), 1,
                       mido.Message("note_off", channel=channel, note=note, velocity=0)))
    events.sort(key=lambda event: (event[0], event[1]))   # at one tick: tempo first, then note-offs, then note-ons
    midi = mido.MidiFile(ticks_per_beat=TICKS)
    track = mido.MidiTrack()
    midi.tracks.append(track)
    now = 0
    for tick, _, message in events:
        track.append(message.copy(time=tick - now))
        now = tick
    return midi, 60.0 / mido.tempo2bpm(lead_in_tempo)   # (the tempo's microseconds per beat, rounded, as played)


def render(seed, folder, seconds=SECONDS, sound_font=None):
    """Write song `seed` into `folder` as `synth.<seed>.flac` (fluidsynth's stereo, its peak at a random level) and
    its beats beside it as `synth.<seed>.beats` (time, position in the bar), the layout `onbeat eval beats --data`
    reads -> its description (`compose`)."""
    folder = Path(folder)
    midi, table, about = compose(seed, seconds)
    name = f"synth.{seed:05d}"
    midi_path, wav_path = folder / f"{name}.mid", folder / f"{name}.wav"
    midi.save(midi_path)
    try:
        subprocess.run(["fluidsynth", "-ni", "-q", "-g", "0.5", "-r", str(RATE), "-F", str(wav_path),
                        str(sound_font or soundfont()), str(midi_path)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        audio, rate = soundfile.read(wav_path)
    except (OSError, subprocess.CalledProcessError, RuntimeError) as error:
        raise OnbeatError(f"fluidsynth could not render {name}: {getattr(error, 'stderr', None) or error}") from None
    finally:
        midi_path.unlink()
        wav_path.unlink(missing_ok=True)
    audio = audio[:int(seconds * rate)]
    audio = audio / (np.abs(audio).max() + 1e-9) * np.random.default_rng(seed).uniform(0.3, 0.9)
    soundfile.write(folder / f"{name}.flac", audio.astype(np.float32), rate)
    np.savetxt(folder / f"{name}.beats", table, fmt=["%.4f", "%d"])
    return about
