"""Beat labels for songs that have none, so the ear's beat activation trains on more real music than the annotated
clips (`onbeat train-beats --styled`): Ellis' dynamic programme (2007) over a whole song's superflux novelty, run
offline, with the tempo searched only in the range the song's dance style is played at.

Offline it sees the whole song, which the live tracker cannot, and the style settles the tempo octave, its hardest
call: on gtzan-dev, given a range of +-12 % around each clip's annotated tempo, its beats score F 0.91 against the
annotations (the live tracker: 0.83 cross-validated). A song whose strongest periodicity over `FREE_BPM` is neither
in its style's range nor an octave of it is left out, as the style's range may not fit it (3 of the 38 ballroom
songs with a recording not flagged suspect, all rumbas, whose tracks are slower or syncopated).
"""
import numpy as np

from onbeat.core.music import ANALYSIS_RATE, HOP
from onbeat.ear.beats import SUB_HOPS, WINDOW

FPS = ANALYSIS_RATE / (HOP // SUB_HOPS)   # novelty frames per second
# BPM each ballroom style is danced at: DanceSport's bars per minute (waltz 28-30, tango 31-33, rumba 25-27, cha-cha
# 30-32) times the beats in a bar, widened by about 8 % each way for the older recordings
STYLE_BPM = {"waltz": (78.0, 96.0), "tango": (116.0, 138.0), "rumba": (92.0, 112.0), "cha-cha": (108.0, 132.0)}
FREE_BPM = (60.0, 180.0)
OCTAVE_TOLERANCE = 0.04   # how close the free periodicity must come to the style's tempo, or twice or half it
TIGHTNESS = 100.0         # Ellis' weight on an interval's squared log-deviation from the period, in novelty s.d.
COMB_MULTIPLES = 8


def beat_period(novelty, low_bpm, high_bpm, step=0.05):
    """The beat period (novelty frames, fractional) in a BPM range: the lag whose multiples the novelty's
    autocorrelation is strongest at (weighted 1/k), so a strong half period does not win alone."""
    centred = novelty - novelty.mean()
    autocorrelation = np.correlate(centred, centred, "full")[len(centred) - 1:]
    periods = np.arange(60 * FPS / high_bpm, 60 * FPS / low_bpm + step, step)
    lags = periods[:, None] * np.arange(1, COMB_MULTIPLES + 1)
    values = np.interp(lags, np.arange(len(autocorrelation)), autocorrelation, right=0.0)
    return float(periods[np.argmax((values / np.arange(1, COMB_MULTIPLES + 1)).sum(axis=1))])


def beat_frames(novelty, period, tightness=TIGHTNESS):
    """The beats (frame indices) that maximise the novelty at the beats (in standard deviations) less `tightness` x
    each interval's squared log-ratio to `period`, over the whole song (Ellis' dynamic programme, traced back from
    the best last beat)."""
    score = novelty / (novelty.std() + 1e-9)
    previous = np.full(len(novelty), -1)
    shortest, longest = int(round(period / 2)), int(round(2 * period))
    for frame in range(shortest, len(novelty)):
        candidates = np.arange(max(0, frame - longest), frame - shortest + 1)
        values = score[candidates] - tightness * np.log((frame - candidates) / period) ** 2
        best = int(np.argmax(values))
        score[frame] += values[best]
        previous[frame] = candidates[best]
    last = len(novelty) - int(period) + int(np.argmax(score[-int(period):]))
    beats = [last]
    while previous[beats[-1]] >= 0:
        beats.append(int(previous[beats[-1]]))
    return np.array(beats[::-1])


def style_beats(novelty, style):
    """Beat frames of a whole song danced in `style` (a name of `STYLE_BPM`), or None when the song's own strongest
    periodicity disagrees with the style's tempo range (see the module's note)."""
    low, high = STYLE_BPM[style]
    period = beat_period(novelty, low, high)
    free = beat_period(novelty, *FREE_BPM)
    if not any(abs(np.log(free * octave / period)) < OCTAVE_TOLERANCE for octave in (0.5, 1.0, 2.0)):
        return None
    return beat_frames(novelty, period)


def frames_of(beats):
    """The novelty frame index (0 = the first sub-hop) at which the onset of a beat at each time (s) peaks: the
    inverse of `BeatTracker.frame_time`."""
    return (np.asarray(beats) + 0.5 * WINDOW / ANALYSIS_RATE) * FPS - 1
