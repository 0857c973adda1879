"""Writing a Motion as BVH on the SMPL-24 skeleton, and the `onbeat export-bvh` command.

The file follows the layout Blender's importer (io_anim_bvh) reads line by line: `{`, OFFSET and CHANNELS each on
their own line after ROOT/JOINT, `End Site` blocks for leaves, one line per frame. Lengths are in centimetres
(import into Blender with scale 0.01 for metres). The root has 6 channels (position, then Z X Y rotation), the
other joints 3 (Z X Y rotation), the usual mocap order.
"""
import numpy as np

from onbeat.models import rotations as R
from onbeat.models.errors import OnbeatError
from onbeat.models.skeleton import JOINT_NAMES, PARENTS

CENTIMETRES = 100.0
ROTATION_ORDER = "zxy"
ROOT_CHANNELS = "CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation"
JOINT_CHANNELS = "CHANNELS 3 Zrotation Xrotation Yrotation"
CHILDREN = [[c for c, p in enumerate(PARENTS) if p == j] for j in range(len(PARENTS))]


def write_bvh(motion, path):
    """Write `motion` to `path`; `onbeat.models.bvh.read_bvh` reads back the same joint positions."""
    order = _depth_first(0)  # BVH lists joints nested, parents first: not SMPL's index order
    offsets = motion.offsets * CENTIMETRES
    lines = ["HIERARCHY"]
    _hierarchy(0, offsets, lines, depth=0)
    lines += ["MOTION", f"Frames: {motion.num_frames}", f"Frame Time: {1.0 / motion.fps:.8f}"]
    # Unwrapping keeps each angle continuous in time, so Blender's keyframe interpolation never spins a joint.
    euler = np.unwrap(R.quat_to_euler(motion.rotations[:, order], ROTATION_ORDER), period=360.0, axis=0)
    root = (motion.root_translation + motion.offsets[0]) * CENTIMETRES
    values = np.concatenate([root, euler.reshape(motion.num_frames, -1)], axis=1)
    try:
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
            np.savetxt(f, values, fmt="%.6f")
    except OSError as e:
        raise OnbeatError(f"{path}: cannot write BVH file ({e.strerror or e})") from None


def _depth_first(joint):
    return [joint] + [j for child in CHILDREN[joint] for j in _depth_first(child)]


def _hierarchy(joint, offsets, lines, depth):
    pad = "  " * depth
    lines += [f"{pad}{'ROOT' if depth == 0 else 'JOINT'} {JOINT_NAMES[joint]}", f"{pad}{{",
              f"{pad}  OFFSET {_triple(offsets[joint])}", f"{pad}  {ROOT_CHANNELS if depth == 0 else JOINT_CHANNELS}"]
    for child in CHILDREN[joint]:
        _hierarchy(child, offsets, lines, depth + 1)
    if not CHILDREN[joint]:
        # Blender draws a leaf bone from the joint to its End Site: continue the last bone by half its length.
        lines += [f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET {_triple(offsets[joint] * 0.5)}", f"{pad}  }}"]
    lines.append(f"{pad}}}")


def _triple(xyz):
    return " ".join(f"{v:.6f}" for v in xyz)


def add_arguments(parser):
    parser.add_argument("input", help="onbeat motion .npz, a .bvh file, or a data set sequence")
    parser.add_argument("-o", "--output", required=True, help="BVH file to write")
    parser.add_argument("--fps", type=float, help="resample to this frame rate (default: keep the input's)")


def run(args):
    from onbeat.models.importers import load_motion
    motion = load_motion(args.input, args.fps)
    write_bvh(motion, args.output)
    print(f"wrote {args.output}: {motion.num_frames} frames at {motion.fps:g} fps, SMPL-24 skeleton in centimetres")
    return 0
