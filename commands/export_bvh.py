"""`onbeat export-bvh`: write a motion file as SMPL-24 BVH."""
from onbeat.core.bvh import write_bvh
from onbeat.core.importers import load_motion


def add_arguments(parser):
    parser.add_argument("input", help="onbeat motion .npz, a .bvh file, or a data set sequence")
    parser.add_argument("-o", "--output", required=True, help="BVH file to write")
    parser.add_argument("--fps", type=float, help="resample to this frame rate (default: keep the input's)")


def run(args):
    motion = load_motion(args.input, args.fps)
    write_bvh(motion, args.output)
    print(f"wrote {args.output}: {motion.num_frames} frames at {motion.fps:g} fps, SMPL-24 skeleton in centimetres")
    return 0
