"""Triangular mel and Gaussian chroma filterbanks over an rfft's bins (the feature rows and the beat front end)."""
import numpy as np

from onbeat.core.music import ANALYSIS_RATE

N_FFT = 2048


def _hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def mel_filterbank(bands, n_fft=N_FFT, sample_rate=ANALYSIS_RATE, fmin=30.0, fmax=11000.0):
    """(bands, n_fft//2 + 1) triangular filters, evenly spaced in mel, each summing the power it covers."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = 700.0 * (10 ** (np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), bands + 2) / 2595.0) - 1.0)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs - lower) / (centre - lower)
    falling = (upper - freqs) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


def chroma_filterbank(n_fft=N_FFT, sample_rate=ANALYSIS_RATE, fmin=55.0, fmax=5000.0):
    """(12, n_fft//2 + 1): each bin's weight per pitch class (0 = C), a Gaussian of its distance in semitones."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    in_range = (freqs >= fmin) & (freqs <= fmax)
    midi = 69 + 12 * np.log2(np.where(in_range, freqs, 440.0) / 440.0)
    distance = (midi[None, :] - np.arange(12)[:, None] + 6) % 12 - 6
    return np.exp(-0.5 * (distance / 0.5) ** 2) * in_range
