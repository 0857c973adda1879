"""Chroma: the notes sounding, whatever their octave, streamed block by block."""
import numpy as np

from onbeat.core.music import ANALYSIS_RATE
from onbeat.ear.harmony import Chroma, chroma_filterbank

A_MAJOR = (220.0, 277.18, 329.63)   # A3, C#4, E4: pitch classes 9, 1, 4


def tone(frequencies, seconds=0.5):
    t = np.arange(int(seconds * ANALYSIS_RATE)) / ANALYSIS_RATE
    return sum(np.sin(2 * np.pi * f * t) for f in frequencies)


def test_a_chord_lights_its_pitch_classes_in_any_octave():
    for octave in (0.5, 1.0, 2.0):
        chroma = Chroma(4096).process(tone([f * octave for f in A_MAJOR]))
        assert set(np.argsort(chroma)[-3:]) == {9, 1, 4}
        assert chroma[[9, 1, 4]].min() > 2 * np.delete(chroma, [9, 1, 4]).max()   # a semitone off leaks a little


def test_the_window_ends_with_the_latest_block_whatever_the_block_sizes():
    audio = np.concatenate([tone(A_MAJOR, 0.3), tone([261.63, 329.63, 392.0], 0.3)])   # A major, then C major
    whole = Chroma(4096).process(audio)
    streamed, start = Chroma(4096), 0
    for size in [1, 735, 5000, 17, 2048] * 100:
        chroma = streamed.process(audio[start:start + size])
        start += size
        if start >= len(audio):
            break
    np.testing.assert_allclose(chroma, whole, rtol=1e-9)
    assert set(np.argsort(whole)[-3:]) == {0, 4, 7}   # the window holds only the C major chord


def test_silence_and_frequencies_outside_the_range_give_no_chroma():
    assert not Chroma(4096).process(np.zeros(4096)).any()
    bank = chroma_filterbank(4096)
    frequencies = np.fft.rfftfreq(4096, 1.0 / ANALYSIS_RATE)
    assert not bank[:, (frequencies < 55.0) | (frequencies > 5000.0)].any()
