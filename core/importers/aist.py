"""AIST++ motion pickles: SMPL poses (T, 72) axis-angle, `smpl_trans` (T, 3) and `smpl_scaling` (1,), 60 fps."""
from pathlib import Path

import numpy as np

from onbeat.core.errors import OnbeatError
from onbeat.core.importers.common import TARGET_FPS, check_finite, finish, read_pickle
from onbeat.core.motion import Motion

AIST_FPS = 60


def aist_motion(data, path="AIST++"):
    """An AIST++ motion dict (smpl_poses (T, 72), smpl_trans (T, 3), smpl_scaling (1,)) as a Motion at 60 fps.
    AIST++ stores the translation of a body scaled by smpl_scaling (in cm-like units); dividing gives metres."""
    if not isinstance(data, dict) or not {"smpl_poses", "smpl_trans", "smpl_scaling"} <= set(data):
        raise OnbeatError(f"{path}: not an AIST++ motion pickle (needs smpl_poses, smpl_trans, smpl_scaling)")
    try:
        poses = np.asarray(data["smpl_poses"], dtype=np.float64)
        trans = np.asarray(data["smpl_trans"], dtype=np.float64)
        scaling = float(np.asarray(data["smpl_scaling"], dtype=np.float64).reshape(-1)[0])
    except (TypeError, ValueError, IndexError) as e:
        raise OnbeatError(f"{path}: AIST++ arrays have the wrong type or shape ({e})") from None
    if poses.ndim != 2 or poses.shape[1] != 72 or poses.shape[0] < 2 or trans.shape != (len(poses), 3):
        raise OnbeatError(f"{path}: expected smpl_poses (T, 72) and smpl_trans (T, 3) with T >= 2, "
                          f"got {poses.shape} and {trans.shape}")
    for name, array in (("smpl_poses", poses), ("smpl_trans", trans)):
        check_finite(path, name, array)
    if not np.isfinite(scaling) or scaling <= 0:
        raise OnbeatError(f"{path}: smpl_scaling must be positive, got {scaling}")
    return Motion.from_axis_angle(AIST_FPS, trans / scaling, poses)


def load_aist(path, fps=TARGET_FPS):
    path = Path(path)
    return finish(aist_motion(read_pickle(path, "pickle"), path), fps)
