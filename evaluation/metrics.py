"""Dance quality metrics on joint positions (T, 24, 3), metres, y up, SMPL-24 order. Numpy only.

Re-implemented from the published definitions and reference code:
- FID_k / FID_g, Div_k / Div_g: AIST++ (Li et al. 2021) and Bailando (Siyao et al. 2022), code in
  Bailando `utils/metrics_new.py` (`quantized_metrics`, `calc_fid`, `calculate_avg_distance`, `normalize`),
  `utils/features/kinetic.py` (Onuma et al. 2008 kinetic features, via AIST++ API) and `utils/features/manual_new.py`
  (Mueller et al. 2005 geometric features, via fairmotion).
- Beat Align Score: Bailando `utils/beat_align_score.py` (`calc_db`, `BA`), as in the AIST++ API `calc_beat_align`.
- PFC: EDGE (Tseng et al. 2023) `eval/eval_pfc.py` `calc_physical_score`.
- Foot skating, jerk, freeze ratio: onbeat's own definitions (documented at each function).

Frame rates: the AIST++/Bailando protocol works at 60 fps (kinetic frame time 1/60 s, BAS sigma = 3 frames,
speed smoothing sigma = 5 frames). Our motion is 30 fps, so the FID features and BAS resample positions to 60 fps
(linear interpolation, `at_protocol_rate`) and then use the published constants unchanged: BAS sigma stays
3 frames = 0.05 s. PFC follows EDGE, which already works at 30 fps.
"""
import warnings

import numpy as np
from scipy import linalg
from scipy.ndimage import gaussian_filter1d
from scipy.signal import argrelextrema

from onbeat.core.skeleton import FOOT_JOINTS, JOINT_INDEX

PROTOCOL_FPS = 60
SEGMENT_SECONDS = 10.0  # FID/Div features per 10 s segment (Bailando: one 20 s segment per dance; our set is small)
UP = 1  # y up


def at_protocol_rate(positions, fps):
    """Positions resampled (linearly) to the 60 fps of the AIST++ protocol."""
    positions = np.asarray(positions, dtype=np.float64)
    if np.isclose(fps, PROTOCOL_FPS):
        return positions
    count = int(np.floor((len(positions) - 1) * PROTOCOL_FPS / fps + 1e-9)) + 1
    t = np.arange(count) * (fps / PROTOCOL_FPS)
    i0 = np.minimum(np.floor(t).astype(int), len(positions) - 1)
    i1 = np.minimum(i0 + 1, len(positions) - 1)
    alpha = (t - i0)[:, None, None]
    return (1 - alpha) * positions[i0] + alpha * positions[i1]


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


def kinetic_features(positions, frame_time=1 / PROTOCOL_FPS, window=2):
    """(72,) per joint: mean horizontal kinetic energy, mean vertical kinetic energy, mean acceleration magnitude
    ("energy expenditure"), each from velocities/accelerations averaged over a sliding window of +-2 frames."""
    p = np.asarray(positions, dtype=np.float64)
    count = len(p)
    step = np.zeros_like(p)
    step[1:] = p[1:] - p[:-1]  # step[k] = p[k] - p[k-1], valid k in 1..T-1
    second = np.zeros_like(p)
    second[1:-1] = p[2:] - 2 * p[1:-1] + p[:-2]  # valid k in 1..T-2
    velocity = _window_mean(step, 1, count - 1, window) / frame_time  # (T-1, J, 3)
    acceleration = _window_mean(second, 1, count - 2, window) / frame_time ** 2
    horizontal = (velocity[..., [0, 2]] ** 2).sum(-1).mean(0)
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
        angle("neck", "root", "rshoulder", "relbow", (25, 180)), angle("neck", "root", "lshoulder", "lelbow", (25, 180)),
        angle("neck", "root", "rhip", "rknee", (50, 180)), angle("neck", "root", "lhip", "lknee", (50, 180)),
        plane("rankle", "neck", "lankle", "root", 0.5 * hl),
        angle("neck", "root", "zero", "y_unit", (70, 110)),
        nplane("zero", "minus_y_unit", "y_min", "rwrist", -1.2 * hl),
        nplane("zero", "minus_y_unit", "y_min", "lwrist", -1.2 * hl),
        fast("root", 2.3 * hl),
    ]
    return np.stack(relations, axis=-1).mean(0).astype(np.float32)


def dance_features(positions, fps, segment_seconds=SEGMENT_SECONDS):
    """Kinetic (N, 72) and geometric (N, 32) features of the dance's segments (as Bailando: at 60 fps, positions
    relative to the root's position in the segment's first frame). A dance shorter than a segment is one segment."""
    p60 = at_protocol_rate(positions, fps)
    length = int(round(segment_seconds * PROTOCOL_FPS))
    starts = range(0, max(len(p60) - length, 0) + 1, length)
    kinetic, geometric = [], []
    for start in starts:
        segment = p60[start:start + length]
        segment = segment - segment[:1, :1]
        kinetic.append(kinetic_features(segment))
        geometric.append(geometric_features(segment))
    return np.stack(kinetic), np.stack(geometric)


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
    """Times (s) of the local minima of the smoothed mean joint speed (Bailando `calc_db`: 60 fps, sigma 5 frames).
    Speed sample i is the step from frame i to i+1, so it is placed at i + 0.5 (the reference uses i)."""
    speed = gaussian_filter1d(mean_joint_speed(at_protocol_rate(positions, fps), PROTOCOL_FPS), 5)
    return (argrelextrema(speed, np.less)[0] + 0.5) / PROTOCOL_FPS


def beat_align_score(positions, fps, beat_times, sigma_frames=3):
    """Bailando/AIST++ BAS: mean over music beats of exp(-d^2 / (2 sigma^2)), d = distance (60 fps frames) to the
    nearest kinematic beat. Music beats after the motion's end are ignored; 0 when there is no beat at all."""
    duration = (len(positions) - 1) / fps
    music = np.asarray(beat_times, dtype=np.float64)
    music = music[(music >= 0) & (music <= duration)] * PROTOCOL_FPS
    motion = kinematic_beats(positions, fps) * PROTOCOL_FPS
    if len(music) == 0 or len(motion) == 0:
        return 0.0
    nearest = np.abs(music[:, None] - motion[None]).min(1)
    return float(np.exp(-nearest ** 2 / (2 * sigma_frames ** 2)).mean())


# --- physics ----------------------------------------------------------------------------------------------------
_FLAT = [a for a in range(3) if a != UP]


def pfc(positions, fps=30):
    """EDGE's Physical Foot Contact score (lower is better): mean over frames of
    min(left ankle/toe horizontal speed) * min(right ...) * root acceleration (upward part clamped at 0, scaled to
    the clip's max), times 10^4. Speeds are per frame as in EDGE (which runs at 30 fps)."""
    p = np.asarray(positions, dtype=np.float64)
    dt = 1 / fps
    root_v = (p[1:, 0] - p[:-1, 0]) / dt
    root_a = (root_v[1:] - root_v[:-1]) / dt
    root_a[:, UP] = np.maximum(root_a[:, UP], 0)
    root_a = np.linalg.norm(root_a, axis=-1)
    root_a = root_a / max(root_a.max(), 1e-12)
    feet = p[:, [JOINT_INDEX["Left_Ankle"], JOINT_INDEX["Left_Foot"], JOINT_INDEX["Right_Ankle"], JOINT_INDEX["Right_Foot"]]]
    foot_v = np.linalg.norm(feet[2:][..., _FLAT] - feet[1:-1][..., _FLAT], axis=-1)
    left, right = foot_v[:, :2].min(1), foot_v[:, 2:].min(1)
    return float((left * right * root_a).mean() * 1e4)


def foot_skating(positions, fps, contact_height=0.05, slide_speed=0.3):
    """Share of foot contacts that slide: among (frame, foot joint) pairs with the joint within 5 cm of the clip's
    lowest foot height, the share whose horizontal speed exceeds 0.3 m/s."""
    p = np.asarray(positions, dtype=np.float64)
    feet = p[:, list(FOOT_JOINTS)]
    height = feet[1:, :, UP] - feet[..., UP].min()
    speed = np.linalg.norm(feet[1:][..., _FLAT] - feet[:-1][..., _FLAT], axis=-1) * fps
    contact = height < contact_height
    return float((speed[contact] > slide_speed).mean()) if contact.any() else 0.0


def jerk(positions, fps):
    """Mean magnitude of the third time derivative of joint positions (m/s^3); lower is smoother."""
    p = np.asarray(positions, dtype=np.float64)
    third = np.diff(p, n=3, axis=0) * fps ** 3
    return float(np.linalg.norm(third, axis=-1).mean())


def freeze_ratio(positions, fps, reference_speed, window_seconds=1.0, fraction=0.1):
    """Share of non-overlapping 1 s windows whose mean joint speed is below 10% of `reference_speed`
    (the median mean-joint-speed of the real data, see `mean_joint_speed`)."""
    speed = mean_joint_speed(positions, fps)
    size = max(1, int(round(window_seconds * fps)))
    count = len(speed) // size
    if count == 0:
        return float(speed.mean() < fraction * reference_speed)
    windows = speed[:count * size].reshape(count, size).mean(1)
    return float((windows < fraction * reference_speed).mean())


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
