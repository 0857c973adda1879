"""Short-time spectra, shared by the ear's stages: the magnitude spectrum of a sliding window of samples, and
triangular filterbanks over its bins (the onset envelope's and the feature extractor's mel bands)."""
import numpy as np


class SlidingSpectrum:
    """The magnitude spectrum of the last `len(taper)` samples through `taper`, fed block by block (in the taper's
    dtype)."""

    def __init__(self, taper):
        self.taper = taper
        self.samples = np.zeros(len(taper), dtype=taper.dtype)

    def process(self, samples):
        """Append a block of samples; the magnitude spectrum (len(taper) // 2 + 1 bins) of the window ending with it."""
        samples = samples[-len(self.samples):]
        self.samples[:-len(samples)] = self.samples[len(samples):]
        self.samples[-len(samples):] = samples
        return np.abs(np.fft.rfft(self.samples * self.taper))


def triangular_filterbank(corners, n_fft, sample_rate):
    """(len(corners) - 2, n_fft // 2 + 1): a triangle over the FFT bins per three consecutive corner frequencies
    (its lower edge, peak and upper edge), peak height 1."""
    bins = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    lower, centre, upper = corners[:-2, None], corners[1:-1, None], corners[2:, None]
    return np.maximum(0.0, np.minimum((bins - lower) / (centre - lower), (upper - bins) / (upper - centre)))


def slaney_hz_to_mel(hz):
    """Slaney's mel scale (his Auditory Toolbox's, as aubio and librosa use it): linear below 1 kHz (15 mel there),
    logarithmic above (27 mel per factor 6.4)."""
    hz = np.asarray(hz, dtype=float)
    return np.where(hz < 1000.0, hz * 3.0 / 200.0, 15.0 + 27.0 * np.log(np.maximum(hz, 1e-9) / 1000.0) / np.log(6.4))


def slaney_mel_to_hz(mel):
    mel = np.asarray(mel, dtype=float)
    return np.where(mel < 15.0, mel * 200.0 / 3.0, 1000.0 * 6.4 ** ((mel - 15.0) / 27.0))


def slaney_mel_filterbank(sample_rate, n_fft, bands, low_hz, high_hz):
    """(bands, n_fft // 2 + 1) triangles with corners equally spaced on Slaney's mel scale from `low_hz` to
    `high_hz`, each of unit area (peak 2 / its width in Hz), as aubio's `filterbank.set_mel_coeffs` made them."""
    corners = np.minimum(slaney_mel_to_hz(np.linspace(slaney_hz_to_mel(low_hz), slaney_hz_to_mel(high_hz), bands + 2)),
                         sample_rate / 2)
    return 2.0 / (corners[2:, None] - corners[:-2, None]) * triangular_filterbank(corners, n_fft, sample_rate)
