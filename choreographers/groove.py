"""`GrooveChoreographer`: a procedural, beat-locked groove, the calm idle on silence and the no-model fallback.

It implements the Choreographer interface (`fps`, `slice_frames`, `next_slice(music, energy, key_pose)`,
`reset()`) from the music features alone, so it needs no model file and no torch:
- the beat phase columns drive a bounce (knees bend on every beat, feet stay on the floor),
- the bar phase drives a side-to-side sway (one sway per two beats) and an arm swing,
- `rms_energy`, normalised by its own decaying peak, and the `energy` argument scale all of it,
- with no beat (phase columns near zero) or no sound it eases into a calm idle: breathing and a slow sway.
Angles are SMPL-24 local rotations (y up, +z forward, +x to the character's left).
"""
import numpy as np

from onbeat.core import rotations as R
from onbeat.core.motion import Motion
from onbeat.core.skeleton import JOINT_INDEX, NUM_JOINTS
from onbeat.core.music import FEATURE_FPS, FEATURE_NAMES

J = JOINT_INDEX
_COLUMN = {name: i for i, name in enumerate(FEATURE_NAMES)}
_X, _Y, _Z = np.eye(3)

# Named key poses (degrees about the parent's axes), shown on a downbeat when asked for (`/onbeat/keypose`).
KEY_POSES = {
    "arms_up": {"Left_Shoulder": (_Z, 70.0), "Right_Shoulder": (_Z, -70.0)},
    "t_pose": {"Left_Shoulder": (_Z, 0.0), "Right_Shoulder": (_Z, 0.0)},
    "point": {"Right_Shoulder": (_Z, -35.0), "Right_Elbow": (_Y, 0.0)},
    "crouch": {"Left_Hip": (_X, -60.0), "Right_Hip": (_X, -60.0), "Left_Knee": (_X, 100.0), "Right_Knee": (_X, 100.0),
               "Left_Ankle": (_X, -40.0), "Right_Ankle": (_X, -40.0)},
}


def _rotation(axis, degrees):
    """(..., 4) quaternions for `degrees` (any shape) about one axis."""
    return R.quat_from_axis_angle(np.radians(np.asarray(degrees, dtype=np.float64))[..., None] * axis)


def _phase(music, name):
    """Phase in [0, 1) from a (sin, cos) pair of columns, and whether it is defined (the pair is not ~0)."""
    s, c = music[:, _COLUMN[f"{name}_sin"]], music[:, _COLUMN[f"{name}_cos"]]
    return (np.arctan2(s, c) / (2 * np.pi)) % 1.0, (s * s + c * c) > 0.25


def downbeat_frame(music):
    """The frame of `music` where the bar phase wraps (the downbeat), else the middle one."""
    bar, _ = _phase(music, "bar_phase")
    wraps = np.flatnonzero(np.diff(bar) < -0.5) + 1
    return int(wraps[0]) if len(wraps) else len(music) // 2


class GrooveChoreographer:
    fps = FEATURE_FPS

    def __init__(self, slice_frames=8, idle_seconds=0.7):
        self.slice_frames = slice_frames
        self.idle_seconds = idle_seconds  # how fast the groove eases in and out of the idle
        self.reset()

    def set_quality(self, level):
        """Nothing to trade: a slice costs well under a millisecond."""

    def reset(self):
        self._frame = 0  # frames generated so far: the idle's own clock
        self._peak_rms = 1e-4  # decaying peak of rms_energy, so any feature scale works
        self._dance = 0.0  # 0 = idle, 1 = full groove (smoothed)

    def next_slice(self, music, energy=1.0, key_pose=None):
        music = np.asarray(music, dtype=np.float64)[:self.slice_frames]  # rows beyond are lookahead: not needed
        n = len(music)
        beat, has_beat = _phase(music, "beat_phase")
        bar, _ = _phase(music, "bar_phase")
        level = self._loudness(music[:, _COLUMN["rms_energy"]])
        dance = self._smoothed_dance(has_beat & (level > 0.1))
        amount = dance * np.clip(energy, 0.0, 2.0) * (0.4 + 0.6 * level)
        idle_time = (self._frame + np.arange(n)) / self.fps
        self._frame += n
        rotations = self._pose(beat, bar, amount, idle_time)
        if key_pose in KEY_POSES:
            self._add_key_pose(rotations, KEY_POSES[key_pose], downbeat_frame(music))
        return _on_the_floor(rotations, sway=0.04 * amount * np.sin(2 * np.pi * 2 * bar))

    def _loudness(self, rms):
        """rms relative to the recent peak (decays with a ~10 s time constant), 0..1."""
        out = np.empty_like(rms)
        for i, value in enumerate(rms):
            self._peak_rms = max(value, self._peak_rms * np.exp(-1.0 / (10 * self.fps)), 1e-4)
            out[i] = value / self._peak_rms
        return np.clip(out, 0.0, 1.0)

    def _smoothed_dance(self, dancing):
        alpha = 1.0 - np.exp(-1.0 / (self.idle_seconds * self.fps))
        out = np.empty(len(dancing))
        for i, target in enumerate(dancing):
            self._dance += alpha * (float(target) - self._dance)
            out[i] = self._dance
        return out

    def _pose(self, beat, bar, amount, idle_time):
        """(n, 24, 4) local rotations: the idle everywhere plus the groove scaled by `amount` (n,)."""
        n = len(beat)
        bounce = amount * 0.5 * (1 + np.cos(2 * np.pi * beat))  # 1 on the beat, 0 half-way between beats
        sway = amount * np.sin(2 * np.pi * 2 * bar)  # one side per beat pair
        swing = amount * np.sin(2 * np.pi * 2 * bar + np.pi / 2)
        breath = np.sin(2 * np.pi * idle_time / 4.0)
        slow_sway = np.sin(2 * np.pi * idle_time / 7.0)
        knee = 10 + 25 * bounce
        q = R.quat_identity((n, NUM_JOINTS))

        def turn(joint, *rotations):
            for axis, degrees in rotations:
                q[:, J[joint]] = R.quat_multiply(q[:, J[joint]], _rotation(axis, degrees))

        turn("Pelvis", (_Y, 3 * slow_sway + 10 * sway), (_Z, 4 * sway))
        for side in ("Left", "Right"):
            turn(f"{side}_Hip", (_X, -knee / 2), (_Z, -4 * sway))
            turn(f"{side}_Knee", (_X, knee))
            turn(f"{side}_Ankle", (_X, -knee / 2))
        turn("Spine1", (_X, 2 * breath + 8 * bounce), (_Z, -3 * sway))
        turn("Spine3", (_X, 1.5 * breath), (_Y, -6 * sway))
        turn("Head", (_X, 4 * bounce - breath), (_Z, 2 * slow_sway - 3 * sway))
        # Arms hang from the T-pose rest (+x is left): 70 degrees down, swinging forward and back opposite each other.
        turn("Left_Shoulder", (_X, -25 * swing), (_Z, -70 + 3 * breath + 10 * bounce))
        turn("Right_Shoulder", (_X, 25 * swing), (_Z, 70 - 3 * breath - 10 * bounce))
        turn("Left_Elbow", (_Y, -20 - 30 * amount - 15 * bounce))
        turn("Right_Elbow", (_Y, 20 + 30 * amount + 15 * bounce))
        return q

    def _add_key_pose(self, rotations, pose, centre):
        """Blend the key pose in around frame `centre` (the slice's downbeat)."""
        n = len(rotations)
        # (n,), not (n, 1): slerp broadcasts the weight over the leading (frame) dimension itself.
        weight = np.clip(1.0 - np.abs(np.arange(n) - centre) / max(n / 2, 1), 0.0, 1.0)
        for joint, (axis, degrees) in pose.items():
            target = np.broadcast_to(_rotation(axis, degrees), (n, 4))
            rotations[:, J[joint]] = R.quat_slerp(rotations[:, J[joint]], target, weight)


def _on_the_floor(rotations, sway):
    """A Motion whose lowest foot joint touches the floor (y = 0) in every frame; `sway` shifts it sideways (m)."""
    at_origin = Motion(FEATURE_FPS, np.zeros((len(rotations), 3)), rotations)
    lowest = at_origin.lowest_foot_height()
    root = np.stack([sway, -lowest, np.zeros_like(sway)], axis=-1)
    return Motion(FEATURE_FPS, root, rotations)
