"""Dance quality metrics on joint positions (T, 24, 3), metres, y up (the floor is y = 0), SMPL-24 order. Numpy only.

Published metrics, re-implemented from the reference code and checked against its numbers
(`tests/test_metric_references.py`):
- FID_k / FID_g, Div_k / Div_g: AIST++ (Li et al. 2021) and Bailando (Siyao et al. 2022), code in Bailando
  `utils/metrics_new.py` (`calc_fid`, `calculate_avg_distance`, `normalize`), `utils/features/kinetic.py` (Onuma et
  al. 2008 kinetic features, via AIST++ API) and `utils/features/manual_new.py` (Mueller et al. 2005 geometric
  features, via fairmotion). Kinetic features come in two variants (`kinetic_features(published=...)`): onbeat's
  uses the true acceleration for "energy expenditure"; Bailando's published code has an operator-precedence slip
  (v1 = p[k] - p[k-1] / dt, about 60x the position of the previous frame), which makes that third of the features
  track the distance from the segment's first root position. Tables say which one they use; only the published
  one compares with papers, the onbeat one measures what it says.
- BAS: Bailando `utils/beat_align_score.py` (`calc_db`, `BA`), as in the AIST++ API. On its own it says little:
  real ballroom dancers score at chance (see `bas_chance`) and a jittery dance scores high.
- PFC: EDGE (Tseng et al. 2023) `eval/eval_pfc.py` (`pfc(published=True)`); onbeat's default is guarded (below).

The AIST++/Bailando protocol works at 60 fps (kinetic frame time 1/60 s, BAS sigma 3 frames, speed smoothing sigma
5 frames): positions at other rates are resampled to 60 fps smoothly (`resample_positions`: a quintic spline, no
linear-interpolation corners; a 900-frame dance at 30 fps is 1800 frames at 60 fps, so its three 10 s segments
are all there). FID/Div use overlapping 10 s segments (5 s apart), each made root-relative to its first frame.

onbeat's own metrics (each defined at its function): beat locking of steps (`step_times`, `beat_locking`) and its
chance, twitch (`twitch`), foot contacts and skate (`foot_contacts`, `foot_skate`), foot penetration, guarded PFC,
jerk, freeze on root-relative motion and travel apart, rotation pops, key-pose reach. All take the frame rate and
give the same value for the same motion at another rate (up to sampling).
"""
import warnings

import numpy as np
from scipy import linalg
from scipy.ndimage import gaussian_filter1d
from scipy.signal import argrelextrema

from onbeat.core.skeleton import FOOT_JOINTS, JOINT_INDEX

PROTOCOL_FPS = 60
SEGMENT_SECONDS = 10.0  # FID/Div features per 10 s segment (Bailando: one 20 s segment per dance; our set is small)
SEGMENT_HOP_SECONDS = 5.0  # segments overlap by half: more of them from a small set
UP = 1  # y up
_FLAT = [a for a in range(3) if a != UP]
GRAVITY = 9.81  # m/s^2


def resample_positions(positions, fps, target_fps):
    """Positions (T, ...) at `fps` resampled to `target_fps` through a quintic interpolating spline: smooth to the
    fourth derivative, so jerk and speed carry no interpolation corners (linear interpolation 25 -> 30 fps leaves a
    6-frame pattern in jerk), and exact for constants and polynomials (a polyphase filter's small per-phase gain
    differences, times metres of travel, show up as a jerk pattern too). Output frame k is at k / target_fps;
    T frames become ceil(T * target_fps / fps) (the last less than a frame past the end is extrapolated)."""
    from scipy.interpolate import make_interp_spline
    positions = np.asarray(positions, dtype=np.float64)
    if np.isclose(fps, target_fps) or len(positions) < 2:
        return positions
    count = int(np.ceil(len(positions) * target_fps / fps - 1e-9))
    degree = 5 if len(positions) > 5 else 3 if len(positions) > 3 else 1
    spline = make_interp_spline(np.arange(len(positions)) / fps, positions, k=degree, axis=0)
    return spline(np.arange(count) / target_fps)


def at_protocol_rate(positions, fps):
    """Positions at the 60 fps of the AIST++ protocol."""
    return resample_positions(positions, fps, PROTOCOL_FPS)


# --- kinetic features (Onuma et al.; AIST++ API / Bailando kinetic.py) -----------------------------------------
def _window_mean(values, first, last, window):
    """For each i in 1..T-1: mean of values[k] over k in [i-window, i+window] ∩ [first, last] (reference loops)."""
    count = len(values)
    cumulative = np.concatenate([np.zeros((1,) + values.shape[1:]), np.cumsum(values, axis=0)])
    i = np.arange(1, count)
    lo = np.clip(i - window, first, last + 1)
    hi = np.clip(i + window, first - 1, last) + 1
    n = np.maximum(hi - lo, 0)
    total = cumulative[np.maximum(hi, lo)] - cumulative[lo]
    return np.where(n[:, None, None] > 0, total / np.maximum(n, 1)[:, None, None], 0.0)


def kinetic_features(positions, frame_time=1 / PROTOCOL_FPS, window=2, published=False):
    """(72,) per joint: mean horizontal kinetic energy, mean vertical kinetic energy, mean acceleration magnitude
    ("energy expenditure"), each from velocities/accelerations averaged over a sliding window of +-2 frames.
    `published`: the energy expenditure as Bailando's code computes it (see the module doc)."""
    p = np.asarray(positions, dtype=np.float64)
    count = len(p)
    step = np.zeros_like(p)
    step[1:] = p[1:] - p[:-1]  # step[k] = p[k] - p[k-1], valid k in 1..T-1
    change = np.zeros_like(p)  # (v[k+1] - v[k]) * dt, valid k in 1..T-2
    if published:
        change[1:-1] = (p[2:] - p[1:-1]) - (p[1:-1] - p[:-2] / frame_time) * frame_time
    else:
        change[1:-1] = p[2:] - 2 * p[1:-1] + p[:-2]
    velocity = _window_mean(step, 1, count - 1, window) / frame_time  # (T-1, J, 3)
    acceleration = _window_mean(change, 1, count - 2, window) / frame_time ** 2
    horizontal = (velocity[..., _FLAT] ** 2).sum(-1).mean(0)
    vertical = (velocity[..., UP] ** 2).mean(0)
    expenditure = np.linalg.norm(acceleration, axis=-1).mean(0)
    return np.stack([horizontal, vertical, expenditure], axis=-1).reshape(-1).astype(np.float32)


# --- geometric features (Mueller et al.; fairmotion / Bailando manual_new.py) ----------------------------------
_HUMERUS = np.linalg.norm(np.subtract([1.99113488e-01, 2.36807942e-01, -1.80702247e-02],
                                      [4.54445392e-01, 2.21158922e-01, -4.10167128e-02]))
_SHOULDER_WIDTH = np.linalg.norm(np.subtract([1.99113488e-01, 2.36807942e-01, -1.80702247e-02],
                                             [-1.91692337e-01, 2.36928746e-01, -1.23055102e-02]))
_HIP_WIDTH = np.linalg.norm(np.subtract([5.64076714e-02, -3.23069185e-01, 1.09197125e-02],
                                        [-6.24834076e-02, -3.31302464e-01, 1.50412619e-02]))
# The reference code divides by 1/120 s whatever the data's rate (fairmotion's 120 fps default); kept for parity.
_MANUAL_FRAME_TIME = 1 / 120
_NAMES = {"root": "Pelvis", "lhip": "Left_Hip", "rhip": "Right_Hip", "belly": "Spine1", "lknee": "Left_Knee",
          "rknee": "Right_Knee", "chest": "Spine3", "lankle": "Left_Ankle", "rankle": "Right_Ankle",
          "ltoes": "Left_Foot", "rtoes": "Right_Foot", "neck": "Neck", "lshoulder": "Left_Shoulder",
          "rshoulder": "Right_Shoulder", "lelbow": "Left_Elbow", "relbow": "Right_Elbow", "lwrist": "Left_Wrist",
          "rwrist": "Right_Wrist"}


def _dot(a, b):
    return (a * b).sum(-1)


def _unit(v):
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def geometric_features(positions):
    """(32,) share of frames where each of Mueller's boolean pose relations holds (Bailando's 32 relations)."""
    p = np.asarray(positions, dtype=np.float64)
    cur, prev = p[1:], p[:-1]
    n = len(cur)
    y_min = np.zeros((n, 3))
    y_min[:, UP] = cur[..., UP].min(axis=1)
    constants = {"zero": np.zeros(3), "y_unit": np.eye(3)[UP], "minus_y_unit": -np.eye(3)[UP], "y_min": y_min}

    def at(name, frames=cur):
        if name in constants:
            return np.broadcast_to(constants[name], (n, 3))
        return frames[:, JOINT_INDEX[_NAMES[name]]]

    def move(j1, j2, j3, j4, threshold):  # velocity of j3 relative to j1 along j1->j2
        velocity = (at(j3) - at(j1)) - (at(j3, prev) - at(j1, prev))
        return _dot(velocity, _unit(at(j2) - at(j1))) / _MANUAL_FRAME_TIME > threshold

    def nmove(j1, j2, j3, j4, threshold):  # velocity of j4 relative to j1 along the normal of plane (j1, j2, j3)
        velocity = (at(j4) - at(j1)) - (at(j4, prev) - at(j1, prev))
        normal = _unit(np.cross(at(j3) - at(j1), at(j2) - at(j1)))
        return _dot(velocity, normal) / _MANUAL_FRAME_TIME > threshold

    def plane(j1, j2, j3, j4, threshold):  # signed distance of j4 from plane (j1, j2, j3)
        normal = _unit(np.cross(at(j3) - at(j1), at(j2) - at(j1)))
        return _dot(normal, at(j4) - at(j1)) > threshold

    def nplane(j1, j2, j3, j4, threshold):  # distance of j4 from the plane through j3 with normal j1->j2
        return _dot(_unit(at(j2) - at(j1)), at(j4) - at(j3)) > threshold

    def angle(j1, j2, j3, j4, limits):  # angle between j1->j2 and j3->j4 strictly inside limits (degrees)
        cosine = np.clip(_dot(_unit(at(j2) - at(j1)), _unit(at(j4) - at(j3))), -1, 1)
        degrees = np.degrees(np.arccos(cosine))
        return (degrees > limits[0]) & (degrees < limits[1])

    def fast(j, threshold):
        return np.linalg.norm(at(j) - at(j, prev), axis=-1) / _MANUAL_FRAME_TIME > threshold

    hl, sw, hw = _HUMERUS, _SHOULDER_WIDTH, _HIP_WIDTH
    relations = [
        nmove("neck", "rhip", "lhip", "rwrist", 1.8 * hl), nmove("neck", "lhip", "rhip", "lwrist", 1.8 * hl),
        nplane("chest", "neck", "neck", "rwrist", 0.2 * hl), nplane("chest", "neck", "neck", "lwrist", 0.2 * hl),
        move("belly", "chest", "chest", "rwrist", 1.8 * hl), move("belly", "chest", "chest", "lwrist", 1.8 * hl),
        angle("relbow", "rshoulder", "relbow", "rwrist", (0, 110)),
        angle("lelbow", "lshoulder", "lelbow", "lwrist", (0, 110)),
        nplane("lshoulder", "rshoulder", "lwrist", "rwrist", 2.5 * sw),
        move("lwrist", "rwrist", "rwrist", "lwrist", 1.4 * hl),
        move("rwrist", "root", "lwrist", "root", 1.4 * hl), move("lwrist", "root", "rwrist", "root", 1.4 * hl),
        fast("rwrist", 2.5 * hl), fast("lwrist", 2.5 * hl),
        plane("root", "lhip", "ltoes", "rankle", 0.38 * hl), plane("root", "rhip", "rtoes", "lankle", 0.38 * hl),
        nplane("zero", "y_unit", "y_min", "rankle", 1.2 * hl), nplane("zero", "y_unit", "y_min", "lankle", 1.2 * hl),
        nplane("lhip", "rhip", "lankle", "rankle", 2.1 * hw),
        angle("rknee", "rhip", "rknee", "rankle", (0, 110)), angle("lknee", "lhip", "lknee", "lankle", (0, 110)),
        fast("rankle", 2.5 * hl), fast("lankle", 2.5 * hl),
        angle("neck", "root", "rshoulder", "relbow", (25, 180)),
        angle("neck", "root", "lshoulder", "lelbow", (25, 180)),
        angle("neck", "root", "rhip", "rknee", (50, 180)), angle("neck", "root", "lhip", "lknee", (50, 180)),
        plane("rankle", "neck", "lankle", "root", 0.5 * hl),
        angle("neck", "root", "zero", "y_unit", (70, 110)),
        nplane("zero", "minus_y_unit", "y_min", "rwrist", -1.2 * hl),
        nplane("zero", "minus_y_unit", "y_min", "lwrist", -1.2 * hl),
        fast("root", 2.3 * hl),
    ]
    return np.stack(relations, axis=-1).mean(0).astype(np.float32)


def segments(positions, fps, segment_seconds=SEGMENT_SECONDS, hop_seconds=SEGMENT_HOP_SECONDS):
    """The dance's segments at 60 fps, each relative to its root position in its first frame (as Bailando):
    `segment_seconds` long, starting every `hop_seconds`; a dance shorter than a segment is one segment."""
    p60 = at_protocol_rate(positions, fps)
    length, hop = round(segment_seconds * PROTOCOL_FPS), round(hop_seconds * PROTOCOL_FPS)
    starts = range(0, max(len(p60) - length, 0) + 1, hop)
    return [p60[s:s + length] - p60[s, :1] for s in starts]


def dance_features(positions, fps, segment_seconds=SEGMENT_SECONDS, hop_seconds=SEGMENT_HOP_SECONDS,
                   published_kinetic=False):
    """Kinetic (N, 72) and geometric (N, 32) features of the dance's `segments`."""
    parts = segments(positions, fps, segment_seconds, hop_seconds)
    kinetic = np.stack([kinetic_features(s, published=published_kinetic) for s in parts])
    return kinetic, np.stack([geometric_features(s) for s in parts])


def normalize(reference, other):
    """Both feature sets scaled by the reference's mean and std (Bailando `normalize`). A small reference set (ours:
    a few validation songs, not all of AIST++) makes that unstable, so: dimensions constant in the reference (a
    relation that never holds there) are dropped, and stds are floored at 10% of the median std, otherwise a
    dimension that barely varies in the reference dominates every distance."""
    mean, std = reference.mean(0), reference.std(0)
    varying = std > 1e-6
    if not varying.any():
        return reference[:, :0], other[:, :0]
    std = np.maximum(std, 0.1 * np.median(std[varying]))[varying]
    return (reference[:, varying] - mean[varying]) / std, (other[:, varying] - mean[varying]) / std


def fid(features_a, features_b):
    """Frechet distance between Gaussians fitted to two feature sets (N, D) (Bailando `calc_fid`)."""
    mu1, mu2 = features_a.mean(0), features_b.mean(0)
    sigma1, sigma2 = np.cov(features_a, rowvar=False), np.cov(features_b, rowvar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)  # few samples: singular covariances are expected
        covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(len(sigma1)) * 1e-5
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = covmean.real
    diff = mu1 - mu2
    return max(0.0, float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)))


def diversity(features):
    """Mean pairwise Euclidean distance between the rows (Bailando `calculate_avg_distance`)."""
    features = np.asarray(features, dtype=np.float64)
    n = len(features)
    if n < 2:
        return float("nan")
    distances = np.linalg.norm(features[:, None] - features[None], axis=-1)
    return float(distances[np.triu_indices(n, 1)].mean())


# --- beat alignment ---------------------------------------------------------------------------------------------
def mean_joint_speed(positions, fps):
    """(T-1,) mean over joints of each joint's speed (m/s)."""
    p = np.asarray(positions, dtype=np.float64)
    return np.linalg.norm(p[1:] - p[:-1], axis=-1).mean(1) * fps


def kinematic_beats(positions, fps):
    """Times (s) of the local minima of the smoothed mean joint speed (Bailando `calc_db`: at 60 fps, Gaussian
    sigma 5 frames; speed sample i, the step from frame i to i+1, is placed at frame i as the reference does)."""
    speed = gaussian_filter1d(mean_joint_speed(at_protocol_rate(positions, fps), PROTOCOL_FPS), 5)
    return argrelextrema(speed, np.less)[0] / PROTOCOL_FPS


def beat_align_score(positions, fps, beat_times, sigma_frames=3):
    """Bailando/AIST++ BAS: mean over music beats of exp(-d^2 / (2 sigma^2)), d = distance (60 fps frames) to the
    nearest kinematic beat. Music beats outside the motion's speed samples are ignored; 0 when there is no beat."""
    return beat_align(kinematic_beats(positions, fps), beat_times, len(at_protocol_rate(positions, fps)) - 1,
                      sigma_frames)


def beat_align(motion_beats, beat_times, speed_samples, sigma_frames=3):
    """BAS from the kinematic beats (s) already found, for a motion of `speed_samples` 60 fps speed samples."""
    music = np.asarray(beat_times, dtype=np.float64) * PROTOCOL_FPS
    music = music[(music >= 0) & (music < speed_samples)]
    motion = np.asarray(motion_beats, dtype=np.float64) * PROTOCOL_FPS
    if len(music) == 0 or len(motion) == 0:
        return 0.0
    nearest = np.abs(music[:, None] - motion[None]).min(1)
    return float(np.exp(-nearest ** 2 / (2 * sigma_frames ** 2)).mean())


def shifted_beats(beat_times, rng, draws=20):
    """Chance beats at the same tempo: `draws` copies of the beats, each shifted by its own random fraction of the
    median beat interval (the tempo and its changes kept, the phase random)."""
    beats = np.asarray(beat_times, dtype=np.float64)
    if len(beats) < 2:
        return [beats] * draws
    period = float(np.median(np.diff(beats)))
    return [beats + rng.uniform(0.0, period) for _ in range(draws)]


# Steps: a foot landing after a swing. Real dancers step on the beat; their whole-body speed barely follows it.
STEP_MIN_SWING_SECONDS = 0.12  # the foot was off the floor (or moving) at least this long ...
STEP_MIN_TRAVEL = 0.10         # ... and travelled at least this far (m) horizontally: a step, not a shuffle
LOCK_WINDOW_BEATS = 8          # beat locking is measured over windows this long (half-overlapping)


def step_times(positions, fps):
    """Times (s) when a foot lands: its ankle or toe comes into contact (`foot_contacts`) after a swing of at least
    STEP_MIN_SWING_SECONDS in which the ankle moved at least STEP_MIN_TRAVEL horizontally."""
    p = np.asarray(positions, dtype=np.float64)
    contact = foot_contacts(p, fps)
    times = []
    for ankle, toe in ((0, 2), (1, 3)):  # FOOT_JOINTS order: left ankle, right ankle, left toe, right toe
        down = contact[:, ankle] | contact[:, toe]
        landings = np.flatnonzero(down[1:] & ~down[:-1]) + 1
        lifts = np.flatnonzero(~down[1:] & down[:-1]) + 1
        for landing in landings:
            earlier = lifts[lifts < landing]
            lift = earlier[-1] if len(earlier) else 0
            travel = np.linalg.norm(p[landing, FOOT_JOINTS[ankle], _FLAT] - p[lift, FOOT_JOINTS[ankle], _FLAT])
            if (landing - lift) / fps >= STEP_MIN_SWING_SECONDS and travel >= STEP_MIN_TRAVEL:
                times.append(landing / fps)
    return np.sort(np.array(times))


def beat_phases(times, beat_times):
    """(inside, beat index, phase 0..1 within that beat interval): `inside` marks the times between the first and the
    last beat; the index and phase are given for those."""
    beats = np.asarray(beat_times, dtype=np.float64)
    times = np.asarray(times, dtype=np.float64)
    k = np.searchsorted(beats, times, side="right") - 1
    inside = (k >= 0) & (k < len(beats) - 1)
    k = k[inside]
    return inside, k, (times[inside] - beats[k]) / (beats[k + 1] - beats[k])


def beat_locking(event_times, beat_times, window_beats=LOCK_WINDOW_BEATS):
    """How consistently motion events fall at one phase of the beat, locally: in windows of `window_beats` beats
    (half-overlapping), the length of the mean of the events' unit phase vectors exp(2 pi i phase) (1: every event
    at the same phase, ~0: no relation), weighted by events per window; windows with fewer than 3 events are left
    out. Local, so a phase that wanders slowly over a song (a drifting clock, a tempo nudge) still counts, and
    free of the phase itself: steps just after the beat count like steps on it. Its chance level (a few events
    always look somewhat locked) is the same events against other songs' beats (`beat_gain` in the evaluation);
    a shifted copy of the song's own beats would not do, the measure ignores the phase."""
    _, index, phase = beat_phases(event_times, beat_times)
    strengths, weights = [], []
    for first in range(0, max(len(beat_times) - 1, 1), max(window_beats // 2, 1)):
        inside = (index >= first) & (index < first + window_beats)
        if inside.sum() >= 3:
            strengths.append(abs(np.exp(2j * np.pi * phase[inside]).mean()))
            weights.append(inside.sum())
    return float(np.average(strengths, weights=weights)) if strengths else 0.0


def twitch(positions, fps, beat_times, window_beats=LOCK_WINDOW_BEATS, bins=8):
    """How much the whole body's speed pulses with the beat: in windows of `window_beats` beats, the mean joint
    speed averaged per eighth of the beat (the beat-synchronous profile), (max - min) of that profile over the
    window's mean speed; the mean over windows. Real dancers keep moving between beats (ballroom: about 0.2-0.3);
    a dance that spikes on every beat and stands still between scores above 1."""
    speed = mean_joint_speed(positions, fps)
    inside, index, phase = beat_phases((np.arange(len(speed)) + 0.5) / fps, beat_times)
    speed = speed[inside]
    slot = np.minimum((phase * bins).astype(int), bins - 1)
    depths = []
    for first in range(0, max(len(beat_times) - window_beats, 0) + 1, max(window_beats // 2, 1)):
        window = (index >= first) & (index < first + window_beats)
        if window.sum() < 2 * bins or len(np.unique(slot[window])) < bins:
            continue
        profile = np.array([speed[window & (slot == b)].mean() for b in range(bins)])
        depths.append((profile.max() - profile.min()) / max(speed[window].mean(), 1e-6))
    return float(np.mean(depths)) if depths else float("nan")


# --- feet and physics ---------------------------------------------------------------------------------------------
CONTACT_TOLERANCE = 0.03  # m above a foot joint's own planted height that still counts as on the floor
CONTACT_SPEED = 0.25      # m/s: landing (`step_times`) needs the foot this slow; contact for skating does not


def foot_heights(positions):
    """(T, 4) height above the floor (y = 0) of the ankles and toes (FOOT_JOINTS order) and (4,) each one's
    planted height: its 5th percentile over the clip (an ankle stands higher than a toe; a few low glitches do not
    move it). The floor is the grounded plane y = 0 (importers ground real dances; models stream heights)."""
    heights = np.asarray(positions, dtype=np.float64)[:, list(FOOT_JOINTS), UP]
    return heights, np.maximum(np.percentile(heights, 5, axis=0), 0.0)


def foot_horizontal_speed(positions, fps):
    """(T, 4) horizontal speed (m/s) of the ankles and toes; frame 0 takes frame 1's."""
    feet = np.asarray(positions, dtype=np.float64)[:, list(FOOT_JOINTS)][..., _FLAT]
    speed = np.linalg.norm(np.diff(feet, axis=0), axis=-1) * fps
    return np.concatenate([speed[:1], speed]) if len(speed) else np.zeros((len(feet), len(FOOT_JOINTS)))


def foot_contacts(positions, fps, with_speed=True):
    """(T, 4) whether each ankle/toe is on the floor: within CONTACT_TOLERANCE of its planted height (per joint,
    from the floor plane), and (`with_speed`) slower than CONTACT_SPEED horizontally."""
    heights, planted = foot_heights(positions)
    low = heights < planted + CONTACT_TOLERANCE
    if not with_speed:
        return low
    return low & (gaussian_filter1d(foot_horizontal_speed(positions, fps), 1.0, axis=0) < CONTACT_SPEED)


def contact_share(positions, fps):
    """Share of frames in which some ankle or toe is at its planted height (height alone, see `foot_contacts`)."""
    return float(foot_contacts(positions, fps, with_speed=False).any(axis=1).mean())


def foot_skate(positions, fps):
    """Mean horizontal speed (m/s) of the ankles and toes over the frames each is at its planted height (height
    alone: a foot that slides is still on the floor); 0 when no foot is ever down. Real ballroom feet glide, so
    compare with the real row."""
    low = foot_contacts(positions, fps, with_speed=False)
    return float(foot_horizontal_speed(positions, fps)[low].mean()) if low.any() else 0.0


def foot_penetration(positions, percentile=95):
    """The `percentile` over frames of how deep (m) the lowest ankle/toe is below the floor (0 when above)."""
    lowest = np.asarray(positions, dtype=np.float64)[:, list(FOOT_JOINTS), UP].min(axis=1)
    return float(np.percentile(np.maximum(-lowest, 0.0), percentile))


def pfc(positions, fps=30, published=False):
    """Physical Foot Contact score (EDGE; lower is better): mean over frames of min(left ankle/toe horizontal
    speed) x min(right ...) x root acceleration (its upward part clamped at 0), x 10^4.

    `published`: EDGE's code exactly: speeds in metres per frame and the acceleration divided by the clip's own
    maximum, which makes a 10 cm root glitch lower (improve) the score, a still root 0/0, and the number depend on
    the frame rate. Default (guarded): speeds in metres per 1/30 s (EDGE's units at any rate) and the acceleration
    in units of g (9.81 m/s^2), a fixed scale: a glitch can only raise it, a still root gives 0."""
    p = np.asarray(positions, dtype=np.float64)
    if len(p) < 3:
        return 0.0
    dt = 1.0 / fps
    root_v = (p[1:, 0] - p[:-1, 0]) / dt
    root_a = (root_v[1:] - root_v[:-1]) / dt
    root_a[:, UP] = np.maximum(root_a[:, UP], 0)
    root_a = np.linalg.norm(root_a, axis=-1)
    feet = p[:, [JOINT_INDEX["Left_Ankle"], JOINT_INDEX["Left_Foot"], JOINT_INDEX["Right_Ankle"],
                 JOINT_INDEX["Right_Foot"]]]
    foot_v = np.linalg.norm(feet[2:][..., _FLAT] - feet[1:-1][..., _FLAT], axis=-1)  # metres per frame
    if published:
        root_a = root_a / root_a.max()
    else:
        root_a = root_a / GRAVITY
        foot_v = foot_v * fps / 30.0
    left, right = foot_v[:, :2].min(1), foot_v[:, 2:].min(1)
    return float((left * right * root_a).mean() * 1e4)


# --- smoothness, freezing, travel -------------------------------------------------------------------------------
def jerk(positions, fps):
    """Mean magnitude of the third time derivative of joint positions (m/s^3); lower is smoother."""
    return float(jerk_by_phase(positions, fps, 1)[0])


def jerk_by_phase(positions, fps, period):
    """(period,) mean jerk magnitude (m/s^3) of the frames at each index modulo `period`: flat for smooth motion,
    patterned where a resampling put interpolation corners (25 -> 30 fps linear: a 6-frame pattern)."""
    third = np.linalg.norm(np.diff(np.asarray(positions, dtype=np.float64), n=3, axis=0) * fps ** 3, axis=-1)
    return np.array([third[k::period].mean() for k in range(period)])


def root_relative(positions):
    """Joint positions minus the root's, per frame: the body's own motion without its travel."""
    p = np.asarray(positions, dtype=np.float64)
    return p - p[:, :1]


def freeze_ratio(positions, fps, reference_speed, window_seconds=1.0, fraction=0.1):
    """Share of non-overlapping 1 s windows whose mean root-relative joint speed is below 10% of
    `reference_speed` (the median root-relative mean joint speed of the real dances): a pose gliding across the
    floor is frozen; travel is reported apart (`travel`)."""
    speed = mean_joint_speed(root_relative(positions), fps)
    size = max(1, round(window_seconds * fps))
    count = len(speed) // size
    if count == 0:
        return float(speed.mean() < fraction * reference_speed)
    windows = speed[:count * size].reshape(count, size).mean(1)
    return float((windows < fraction * reference_speed).mean())


def travel(positions, fps):
    """Mean horizontal speed of the root (m/s)."""
    root = np.asarray(positions, dtype=np.float64)[:, 0, _FLAT]
    return float(np.linalg.norm(np.diff(root, axis=0), axis=-1).mean() * fps) if len(root) > 1 else 0.0


# --- rotation pops -----------------------------------------------------------------------------------------------
POP_DEGREES = 30.0       # a joint turning this far ...
POP_SECONDS = 1.0 / 60   # ... within this long pops: an avatar driven by the rotations visibly spins the joint


def rotation_pops(rotations, fps):
    """(24,) share of frames in which each joint's local rotation turns faster than 30 degrees per 1/60 s.

    `rotations` (T, J, 4) local quaternions (w, x, y, z). The angle between consecutive frames is compared with the
    same angular speed at the clip's own rate (60 degrees per frame at 30 fps), so clips at any rate compare."""
    q = np.asarray(rotations, dtype=np.float64)
    if len(q) < 2:
        return np.zeros(q.shape[1])
    dot = np.abs(np.sum(q[1:] * q[:-1], axis=-1)) / (np.linalg.norm(q[1:], axis=-1) * np.linalg.norm(q[:-1], axis=-1))
    turned = np.degrees(2.0 * np.arccos(np.clip(dot, 0.0, 1.0)))
    return np.mean(turned > POP_DEGREES / (POP_SECONDS * fps), axis=0)
