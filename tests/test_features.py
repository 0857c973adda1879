"""The feature extractor: online == offline, alignment, gain robustness, beat columns, bad input."""
import numpy as np
import pytest
import soundfile
from scipy.signal import resample_poly

from onbeat.core.music import AUDIO_COLUMNS, FEATURE_DIM, FEATURE_FPS, FEATURE_NAMES
from onbeat.ear.beats import BeatState
from onbeat.ear.features import FeatureExtractor, Resampler, beat_columns, extract_file, future_features
from onbeat.ear.sources import SyntheticSource, read_audio

MUSIC = "music-cc/admiralbob77_-_Choice_-_Drum-bass.ogg"   # 25 s, 22050 Hz mono, drum and bass
PHASE_COS, BEAT_DISTANCE = FEATURE_NAMES.index("beat_phase_cos"), FEATURE_NAMES.index("beat_distance")


def online(samples, sample_rate, seed=0, largest=5000):
    """Rows from feeding `samples` in random block sizes (1 .. largest frames)."""
    extractor, rng, rows, start = FeatureExtractor(sample_rate), np.random.default_rng(seed), [], 0
    while start < len(samples):
        size = int(rng.integers(1, largest))
        rows.append(extractor.process(samples[start:start + size]))
        start += size
    return np.concatenate(rows)


def synthetic(seconds, bpm=120.0, sample_rate=44100):
    source = SyntheticSource(bpm=bpm, seconds=seconds, realtime=False, sample_rate=sample_rate)
    return np.concatenate([block.samples for block in source.blocks()]), source


@pytest.mark.parametrize("in_rate", [44100, 48000, 16000])
def test_resampler_is_resample_poly_whatever_the_chunking(in_rate):
    x = np.random.default_rng(0).standard_normal(in_rate)
    whole = Resampler(in_rate, 22050)
    reference = whole.process(x)
    expected = resample_poly(x, whole.up, whole.down)
    assert np.abs(reference - expected[:len(reference)])[:-20].max() < 1e-12
    assert len(expected) - len(reference) <= 14   # only the 10 input samples of look-ahead are pending
    chunked, pieces, start, rng = Resampler(in_rate, 22050), [], 0, np.random.default_rng(1)
    while start < len(x):
        size = int(rng.integers(1, 3000))
        pieces.append(chunked.process(x[start:start + size]))
        start += size
    np.testing.assert_array_equal(np.concatenate(pieces), reference)


@pytest.mark.slow
@pytest.mark.parametrize("rate", [22050, 44100, 48000])
def test_online_matches_offline_on_real_music(data_dir, tmp_path, rate):
    music, music_rate = read_audio(data_dir / MUSIC)
    music = music[:20 * music_rate]
    path = tmp_path / f"music_{rate}.wav"
    if rate != music_rate:   # the same music at a typical sound-card rate, stereo
        up = resample_poly(music[:, 0], rate, music_rate)
        music = np.stack([up, 0.5 * up], axis=1).astype(np.float32)
    soundfile.write(path, music, rate, subtype="FLOAT")
    offline, beats = extract_file(path)
    live = online(music, rate, seed=rate)
    assert offline.shape == (int(np.ceil(len(music) * FEATURE_FPS / rate)), FEATURE_DIM)
    assert len(offline) - len(live) <= 1
    assert np.abs(live - offline[:len(live)]).max() <= 1e-5
    assert len(beats) > 20 and np.all(np.diff(beats) > 0)


def test_online_matches_offline_on_synthetic_source(tmp_path):
    samples, source = synthetic(10.0, bpm=128)
    soundfile.write(tmp_path / "drums.wav", samples, source.sample_rate, subtype="FLOAT")
    offline, _ = extract_file(tmp_path / "drums.wav")
    live = online(samples, source.sample_rate, largest=800)
    assert np.abs(live - offline[:len(live)]).max() <= 1e-5


def test_rows_are_aligned_with_motion_frames(tmp_path):
    rate, seconds = 44100, 2.01
    click_at = 1.5
    signal = np.zeros(int(seconds * rate), dtype=np.float32)
    signal[int(click_at * rate):int(click_at * rate) + 200] = 0.8
    soundfile.write(tmp_path / "click.wav", signal, rate)
    rows, _ = extract_file(tmp_path / "click.wav")
    assert rows.shape == (61, FEATURE_DIM) and rows.dtype == np.float32    # ceil(2.01 * 30)
    assert int(np.argmax(rows[:, 0])) == int(click_at * FEATURE_FPS)        # the click's hop has the onset


def test_features_are_gain_robust():
    samples, source = synthetic(8.0)
    loud = FeatureExtractor(source.sample_rate).process(samples)
    quiet = FeatureExtractor(source.sample_rate).process(samples * 0.1)     # -20 dB
    after_two_seconds = slice(2 * FEATURE_FPS, None)
    assert np.abs(loud - quiet)[after_two_seconds].max() < 1e-3
    assert loud[after_two_seconds, 1].mean() > 0.5   # and the signal is not just clipped to zero


def test_beat_columns_line_up_with_true_beats():
    samples, source = synthetic(12.0, bpm=120)
    rows = FeatureExtractor(source.sample_rate).process(samples)
    beats = source.beat_times(12.0)
    locked = beats[(beats > 4.0) & (beats < len(rows) / FEATURE_FPS - 0.1)]
    on_beat = rows[np.round(locked * FEATURE_FPS).astype(int)]
    assert np.all(on_beat[:, PHASE_COS] > 0.9)       # phase ~0 on each true beat
    assert np.all(on_beat[:, BEAT_DISTANCE] < 0.15)
    halfway = rows[np.round((locked[:-1] + 0.25) * FEATURE_FPS).astype(int)]
    assert np.all(halfway[:, BEAT_DISTANCE] > 0.8)   # and ~1 halfway between beats


def test_future_features_hold_the_sound_and_continue_the_beat_clock():
    samples, source = synthetic(8.0, bpm=120)
    extractor = FeatureExtractor(source.sample_rate)
    rows = extractor.process(samples)
    ahead = future_features(rows[-1], extractor.states[-1], 30)
    assert ahead.shape == (30, FEATURE_DIM) and ahead.dtype == np.float32
    np.testing.assert_array_equal(ahead[:, AUDIO_COLUMNS], np.repeat(rows[-1:, AUDIO_COLUMNS], 30, axis=0))
    # the predicted beat columns match what the extractor computes once that audio has arrived
    more, _ = synthetic(8.5, bpm=120)
    later = extractor.process(more[len(samples):])
    assert len(later) >= 10
    assert np.abs(ahead[:10, PHASE_COS:] - later[:10, PHASE_COS:]).max() < 0.15
    for beat in source.beat_times(8.9)[-2:]:        # the true beats in the predicted second land on beats
        assert ahead[int(round(beat * FEATURE_FPS)) - len(rows), BEAT_DISTANCE] < 0.15


def test_beat_columns_definition():
    state = BeatState(time=1.1, bpm=120.0, phase=0.2, bar_position=3, is_beat=False, is_downbeat=False,
                      confidence=1.0, next_beats=np.array([1.5, 2.0, 2.5, 3.0]), last_beat=1.0)
    columns = beat_columns(state, [1.0, 1.25, 1.5, 1.625, 3.75])
    phase = np.arctan2(columns[:, 0], columns[:, 1]) / (2 * np.pi) % 1.0
    np.testing.assert_allclose(phase, [0.0, 0.5, 0.0, 0.25, 0.5], atol=1e-9)
    np.testing.assert_allclose(columns[:, 2], [0.0, 1.0, 0.0, 0.5, 1.0], atol=1e-9)   # distance / half a beat
    bar = np.arctan2(columns[:, 3], columns[:, 4]) / (2 * np.pi) % 1.0
    # the beat at 1.0 is the 4th of its bar, so 1.5 is a downbeat; beyond the predictions the period goes on
    np.testing.assert_allclose(bar, [0.75, 0.875, 0.0, 0.0625, 0.125], atol=1e-9)


@pytest.mark.parametrize("kind", ["silence", "clipping", "nan", "stereo-noise"])
def test_bad_input_gives_finite_features(kind):
    rate, rng = 48000, np.random.default_rng(0)
    signal = {"silence": np.zeros((3 * rate, 1)),
              "clipping": np.clip(10 * np.sin(np.arange(3 * rate) * 2 * np.pi * 220 / rate), -1, 1)[:, None],
              "nan": np.where(rng.random((3 * rate, 1)) < 0.01, np.nan, rng.standard_normal((3 * rate, 1))),
              "stereo-noise": rng.standard_normal((3 * rate, 2)) * [1.0, 0.0]}[kind]
    extractor = FeatureExtractor(rate)
    rows = online(signal.astype(np.float32), rate)
    assert rows.shape[1] == FEATURE_DIM and len(rows) >= 89 and np.isfinite(rows).all()
    audio = rows[:, AUDIO_COLUMNS]
    assert audio.min() >= 0.0 and audio.max() <= 1.0
    if kind == "silence":
        assert np.all(audio == 0.0)
    if kind == "nan":
        extractor.process(signal)
        assert extractor.bad_samples == int(np.isnan(signal).sum())
