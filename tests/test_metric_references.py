"""onbeat's metrics against the published reference implementations' own numbers.

The numbers below were computed once, outside this project, by the reference code itself on the input that
`reference_motion` / `reference_features` build (closed form, so it is the same input here):
- Bailando (github.com/lisiyao21/Bailando, commit cc90b98b): `utils/features/kinetic.py` `extract_kinetic_features`,
  `utils/features/manual_new.py` `extract_manual_features`, `utils/beat_align_score.py` `calc_db` and `BA` (music
  beats `BEAT_FRAMES`), `utils/metrics_new.py` `calc_fid(b, a)` and `calculate_avg_distance`; positions at 60 fps.
- EDGE (github.com/Stanford-TML/EDGE, commit 17c34286): `eval/eval_pfc.py` `calc_physical_score` on the same
  positions saved as `full_pose` with z up (our y), read as 30 fps.
Only the numbers are copied; the assertions hold to 1e-6.
"""
import numpy as np
import pytest

from onbeat.core.skeleton import rest_positions
from onbeat.evaluation import metrics

BEAT_FRAMES = np.arange(12, 240, 30)  # music beats, 60 fps frames

# Bailando extract_kinetic_features (float32): per joint horizontal, vertical kinetic energy, energy expenditure.
KINETIC = [
    0.639869273, 0.191066191, 5009.17236, 0.729106545, 0.254285485, 4828.85449, 0.825318754, 0.31654802, 4623.59766,
    1.00810611, 0.373698801, 5235.32275, 1.11839056, 0.438519031, 4157.76904, 1.31710184, 0.519159973, 3663.58691,
    1.40969431, 0.603047073, 5681.03467, 1.64565909, 0.677915215, 3595.18188, 1.79467869, 0.757119656, 3077.52759,
    2.00400281, 0.861614943, 5844.87744, 2.15189147, 0.983170569, 3889.07861, 2.35795903, 1.09291351, 3247.7771,
    2.62303185, 1.18699551, 6374.30176, 2.82516694, 1.29251695, 6255.77686, 3.06758237, 1.41862059, 6004.83887,
    3.21743631, 1.5355463, 6719.56201, 3.53018808, 1.62424779, 6585.55957, 3.73361969, 1.71554029, 5990.66895,
    3.99102402, 1.84533393, 7035.52979, 4.1449542, 1.99469364, 5664.13672, 4.41706848, 2.11908698, 7668.6875,
    4.7120924, 2.22308874, 5572.85938, 4.94986248, 2.35149503, 7847.06641, 5.16803837, 2.50574923, 5541.68018]
# Bailando extract_manual_features: each relation's share of the 239 frame pairs (the counts, exactly).
MANUAL_COUNTS = [98, 107, 98, 77, 105, 105, 76, 94, 209, 117, 113, 126, 239, 239, 60, 138, 0, 0, 61, 32, 49, 239, 239,
                 235, 239, 49, 32, 13, 0, 0, 0, 239]
MOTION_BEATS = [20, 76, 133, 197, 215]  # calc_db
BA = 0.2125897496993038
FID = 7.019921135186043
DIVERSITY_A, DIVERSITY_B = 2.23670321248622, 2.932395503212424
PFC = 1.9477754631123945  # EDGE, printed as "has a mean PFC of ..."


def reference_motion(frames=240):
    """(240, 24, 3): the SMPL rest pose standing, every joint wobbling on its own sines, the body travelling."""
    t = np.arange(frames)[:, None, None] / 60.0
    joint, axis = np.arange(24)[None, :, None], np.arange(3)[None, None, :]
    wobble = 0.12 * np.sin(2 * np.pi * (0.6 + 0.11 * joint + 0.23 * axis) * t + 0.7 * joint + 1.3 * axis)
    return rest_positions() + np.array([0.0, 0.95, 0.0]) + wobble + np.array([0.4, 0.0, 0.25]) * t


def reference_features():
    i, d = np.arange(30)[:, None], np.arange(6)[None, :]
    return np.sin(0.9 * i + 1.7 * d) + 0.1 * d, 1.3 * np.cos(1.1 * i + 0.4 * d) + 0.2


def test_kinetic_features_published_variant_match_bailando():
    assert metrics.kinetic_features(reference_motion(), published=True) == pytest.approx(KINETIC, rel=1e-6)


def test_onbeat_kinetic_features_differ_only_in_energy_expenditure():
    ours = metrics.kinetic_features(reference_motion()).reshape(24, 3)
    published = np.array(KINETIC).reshape(24, 3)
    assert ours[:, :2] == pytest.approx(published[:, :2], rel=1e-6)
    assert np.all(ours[:, 2] < 0.05 * published[:, 2])  # the true acceleration, not ~60x a position


def test_geometric_features_match_bailando():
    assert metrics.geometric_features(reference_motion()) == pytest.approx(np.array(MANUAL_COUNTS) / 239, abs=1e-6)


def test_beat_align_score_matches_bailando():
    positions = reference_motion()
    assert list(np.round(metrics.kinematic_beats(positions, 60) * 60).astype(int)) == MOTION_BEATS
    assert metrics.beat_align_score(positions, 60, BEAT_FRAMES / 60) == pytest.approx(BA, abs=1e-6)


def test_fid_and_diversity_match_bailando():
    a, b = reference_features()
    assert metrics.fid(b, a) == pytest.approx(FID, abs=1e-6)
    assert metrics.diversity(a) == pytest.approx(DIVERSITY_A, abs=1e-6)
    assert metrics.diversity(b) == pytest.approx(DIVERSITY_B, abs=1e-6)


def test_published_pfc_matches_edge():
    assert metrics.pfc(reference_motion(), 30, published=True) == pytest.approx(PFC, abs=1e-6)
