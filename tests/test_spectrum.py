"""The ear's short-time spectra: the sliding window's spectrum and the triangular (mel) filterbanks."""
import numpy as np
import pytest

from onbeat.ear.spectrum import (
    SlidingSpectrum,
    slaney_hz_to_mel,
    slaney_mel_filterbank,
    slaney_mel_to_hz,
    triangular_filterbank,
)


def test_the_sliding_spectrum_is_that_of_the_last_window_of_samples():
    rng = np.random.default_rng(0)
    taper = np.hanning(64)
    spectrum = SlidingSpectrum(taper)
    stream = rng.standard_normal(300)
    heard = 0
    for size in (10, 30, 100, 7, 150):          # blocks shorter and longer than the window
        result = spectrum.process(stream[heard:heard + size])
        heard += size
        window = np.concatenate([np.zeros(64), stream[:heard]])[-64:]
        np.testing.assert_allclose(result, np.abs(np.fft.rfft(window * taper)), atol=1e-12)
    assert SlidingSpectrum(taper.astype(np.float32)).process(stream[:64]).dtype == np.float32


def test_a_triangle_rises_from_its_lower_corner_to_its_peak_and_falls_to_its_upper_one():
    filters = triangular_filterbank(np.array([100.0, 200.0, 400.0]), n_fft=100, sample_rate=10000)  # 100 Hz bins
    np.testing.assert_allclose(filters[0, :6], [0.0, 0.0, 1.0, 0.5, 0.0, 0.0])


def test_the_mel_filterbank_is_slaney_s_with_unit_area_triangles():
    assert slaney_hz_to_mel(1000.0) == pytest.approx(15.0) and slaney_hz_to_mel(6400.0) == pytest.approx(42.0)
    assert slaney_hz_to_mel(300.0) == pytest.approx(4.5)
    hz = np.array([30.0, 440.0, 1000.0, 5000.0, 11000.0])
    np.testing.assert_allclose(slaney_mel_to_hz(slaney_hz_to_mel(hz)), hz)
    filters = slaney_mel_filterbank(22050, 1024, 80, 30.0, 11000.0).T
    assert filters.shape == (513, 80) and (filters >= 0).all()
    bin_hz = 22050 / 1024
    peaks = filters.argmax(axis=0) * bin_hz
    assert (np.diff(slaney_hz_to_mel(peaks[10:])) > 0).all()   # the centres climb, equally spaced in mel
    wide = (filters > 0).sum(axis=0) >= 8   # filters spanning enough bins to integrate
    np.testing.assert_allclose(filters[:, wide].sum(axis=0) * bin_hz, 1.0, rtol=0.02)
