"""Pitch-class energy (chroma): which notes sound, whatever their octave. The feature extractor's harmony columns
(`onbeat.ear.features`) and the bar counter's chord changes (`onbeat.ear.beats.BarCounter`) are made of it."""
import numpy as np

from onbeat.core.music import ANALYSIS_RATE
from onbeat.ear.spectrum import SlidingSpectrum


def chroma_filterbank(n_fft, sample_rate=ANALYSIS_RATE, fmin=55.0, fmax=5000.0):
    """(12, n_fft//2 + 1): each bin's weight per pitch class (0 = C), a Gaussian of its distance in semitones."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    in_range = (freqs >= fmin) & (freqs <= fmax)
    midi = 69 + 12 * np.log2(np.where(in_range, freqs, 440.0) / 440.0)
    distance = (midi[None, :] - np.arange(12)[:, None] + 6) % 12 - 6
    return np.exp(-0.5 * (distance / 0.5) ** 2) * in_range


class Chroma:
    """The chroma (12 pitch-class energies, C first) of the last `window` samples, updated block by block."""

    def __init__(self, window, sample_rate=ANALYSIS_RATE):
        self.filterbank = chroma_filterbank(window, sample_rate)
        self.spectrum = SlidingSpectrum(np.hanning(window))

    def process(self, samples):
        """Append a block of samples; the chroma of the window ending with it."""
        return self.filterbank @ self.spectrum.process(np.asarray(samples, dtype=float)) ** 2
