"""Motorica dance (KTH) expmap pickles: pandas tables at 30 fps made by pymo's pipeline.

Columns: 19 joints' local rotations as exponential maps (`<joint>_alpha/beta/gamma` = x, y, z of axis * angle),
`Hips_Yposition` (cm) and the root's deltas from `RootTransformer('pos_rot_deltas')`: the ground velocity in
the heading frame (`reference_dX/dZposition`, cm per frame) and the heading's turn (`reference_dYrotation`, rad
per frame). The hips rotation is stored relative to the heading. `_integrate_heading` undoes that as pymo's
inverse transform does; the result keeps the feet planted (checked against the other sign and frame choices).
"""
import re
from pathlib import Path

import numpy as np

from onbeat.core import rotations as R
from onbeat.core.beat_grid import BeatGrid, bar_positions, track_beats
from onbeat.core.errors import OnbeatError
from onbeat.core.importers.common import (
    SMPL_REST,
    TARGET_FPS,
    Y_AXIS,
    Sequence,
    check_finite,
    finish,
    read_pickle,
    sided,
)
from onbeat.core.motion import Motion
from onbeat.core.skeleton import JOINT_INDEX as _J
from onbeat.core.skeleton import NUM_JOINTS, REST_OFFSETS

# Motorica's joints and their SMPL-24 counterparts. The pickles carry no skeleton; their rotations are local to a
# T-pose rest with SMPL's axes (x = the character's left, y up, z forward): knees bend about +x and the left and
# right elbows about -y and +y, as in SMPL (checked on the data), so the local rotations transfer as they are.
MOTORICA_JOINTS = sided({"{S}UpLeg": "{side}_Hip", "{S}Leg": "{side}_Knee", "{S}Foot": "{side}_Ankle",
                         "{S}Shoulder": "{side}_Collar", "{S}Arm": "{side}_Shoulder",
                         "{S}ForeArm": "{side}_Elbow", "{S}Hand": "{side}_Wrist"})
MOTORICA_JOINTS.update({"Hips": "Pelvis", "Spine": "Spine1", "Spine1": "Spine3", "Neck": "Neck", "Head": "Head"})
MOTORICA_ROOT = ("Hips_Yposition", "reference_dXposition", "reference_dZposition", "reference_dYrotation")
MOTORICA_STYLES = {"gKR": "krump", "gLH": "hiphop", "gLO": "locking", "gPO": "popping", "gJZ": "jazz",
                   "gCH": "charleston", "gTP": "tap", "gCA": "casual"}
MOTORICA_FPS = 30
MOTORICA_CM = 0.01
ANKLE_HEIGHT = 0.08  # m, ankle joint above the floor when standing: SMPL's leg plus this is the standing hip height


def motorica_take(path):
    """The take a Motorica file belongs to: its name without the `_00`/`_01` sub-sampling phase."""
    stem = Path(path).name.split(".")[0]
    return re.sub(r"_\d\d$", "", stem)


def _integrate_heading(d_yaw, dx, dz):
    """pymo's inverse of RootTransformer('pos_rot_deltas'): yaw_t = yaw_{t-1} + dyaw_t, and the ground velocity
    (dx, dz) of frame t is in the frame of yaw_t. Frame 0 starts at the origin facing +z."""
    yaw = np.concatenate([[0.0], np.cumsum(d_yaw[1:])])
    step = np.stack([dx * np.cos(yaw) + dz * np.sin(yaw), np.zeros_like(dx), -dx * np.sin(yaw) + dz * np.cos(yaw)], -1)
    step[0] = 0.0
    return yaw, np.cumsum(step, axis=0)


def motorica_motion(frame, path="Motorica"):
    """A Motorica expmap table (pandas DataFrame) as a Motion at 30 fps (metres, not grounded)."""
    columns = [f"{joint}_{c}" for joint in MOTORICA_JOINTS for c in ("alpha", "beta", "gamma")] + list(MOTORICA_ROOT)
    missing = [c for c in columns if c not in getattr(frame, "columns", ())]
    if missing:
        raise OnbeatError(f"{path}: not a Motorica expmap table (missing columns {', '.join(missing[:6])}"
                          f"{', ...' if len(missing) > 6 else ''})")
    values = np.asarray(frame[columns].to_numpy(), dtype=np.float64)
    if len(values) < 2:
        raise OnbeatError(f"{path}: needs at least 2 frames, has {len(values)}")
    check_finite(path, "the table", values)
    joints = len(MOTORICA_JOINTS)
    expmaps = values[:, :3 * joints].reshape(-1, joints, 3)
    height, dx, dz, d_yaw = (values[:, 3 * joints + i] for i in range(4))
    yaw, ground_path = _integrate_heading(d_yaw, dx * MOTORICA_CM, dz * MOTORICA_CM)

    rotations = R.quat_identity((len(values), NUM_JOINTS))
    for k, smpl in enumerate(MOTORICA_JOINTS.values()):
        rotations[:, _J[smpl]] = R.quat_from_axis_angle(expmaps[:, k])
    # The hips rotation is stored relative to the heading; put the heading back.
    heading = R.quat_from_axis_angle(yaw[:, None] * Y_AXIS)
    rotations[:, 0] = R.quat_multiply(heading, rotations[:, 0])
    root = ground_path + height[:, None] * MOTORICA_CM * Y_AXIS
    # Bone lengths: SMPL's, scaled so the standing hip height (95th percentile) matches the dancer's.
    scale = np.percentile(height * MOTORICA_CM, 95) / (SMPL_REST[0, 1] - SMPL_REST[_J["Left_Ankle"], 1] + ANKLE_HEIGHT)
    return Motion(MOTORICA_FPS, root, rotations, REST_OFFSETS * scale)


def motorica_beats(frame, path="Motorica"):
    """The BeatGrid of a Motorica audio feature table (`*.audio29_30fps.pkl`, 30 fps), or None without beats.

    Its `Beat_0` flags are peaks picked from `Beatactivation_0` above a threshold: a sparse, gappy subset of the
    beats (half of them missing in places). The grid is the offline beat tracker run over the activation, which
    keeps the tempo through the gaps: 98% of the flags fall within 70 ms of it (`onbeat dataset check --beats`).
    Downbeats: the most activated of the four beat positions."""
    if "Beatactivation_0" not in getattr(frame, "columns", ()):
        raise OnbeatError(f"{path}: not a Motorica audio feature table (no Beatactivation_0 column)")
    activation = np.asarray(frame["Beatactivation_0"].to_numpy(), np.float64)
    check_finite(path, "the beat activation", activation)
    times = track_beats(activation, MOTORICA_FPS)
    if len(times) < 2:
        return None
    frames = np.clip(np.round(times * MOTORICA_FPS).astype(int), 0, len(activation) - 1)
    return BeatGrid(times, bar_positions(activation[frames]))


def motorica_audio_path(path):
    """The audio feature table beside a Motorica motion file."""
    return Path(path).with_name(Path(path).name.replace(".expmap_30fps.pkl", ".audio29_30fps.pkl"))


def load_motorica(path, fps=TARGET_FPS):
    """One Motorica `*.expmap_30fps.pkl` file as a Sequence (take = the file without its `_00`/`_01` phase), with
    the beats of its music from the audio feature table beside it, when that is there."""
    path = Path(path)
    motion = finish(motorica_motion(read_pickle(path, "pandas"), path), fps)
    style = next((s for code, s in MOTORICA_STYLES.items() if f"_{code}_" in path.name), "")
    audio = motorica_audio_path(path)
    beats = motorica_beats(read_pickle(audio, "pandas"), audio) if audio.is_file() else None
    return Sequence(path.name.split(".")[0], "motorica", style, motion, None, motorica_take(path), False,
                    beats=beats)
