"""The canonical skeleton: SMPL-24.

Joint names, parents and rest offsets are copied as numbers from the SMPL 24-joint tree published in
EDGE (Tseng et al. 2023, MIT licence; `offsets_edge` in the project's shared `skeleton/smpl24.json`).
Units are metres, y up, +z forward, +x to the character's left. Index 0 (Pelvis) is the root.
"""
import numpy as np

JOINT_NAMES = (
    "Pelvis",
    "Left_Hip",
    "Right_Hip",
    "Spine1",
    "Left_Knee",
    "Right_Knee",
    "Spine2",
    "Left_Ankle",
    "Right_Ankle",
    "Spine3",
    "Left_Foot",
    "Right_Foot",
    "Neck",
    "Left_Collar",
    "Right_Collar",
    "Head",
    "Left_Shoulder",
    "Right_Shoulder",
    "Left_Elbow",
    "Right_Elbow",
    "Left_Wrist",
    "Right_Wrist",
    "Left_Palm",
    "Right_Palm",
)

PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)

# Offset of each joint from its parent in the rest pose (metres). The root's offset is zero.
REST_OFFSETS = np.array([
    [0.00000000, 0.00000000, 0.00000000],
    [0.05858135, -0.08228004, -0.01766408],
    [-0.06030973, -0.09051332, -0.01354254],
    [0.00443945, 0.12440352, -0.03838522],
    [0.04345142, -0.38646945, 0.00803700],
    [-0.04325663, -0.38368791, -0.00484304],
    [0.00448844, 0.13795640, 0.02682033],
    [-0.01479032, -0.42687458, -0.03742800],
    [0.01905555, -0.42004550, -0.03456167],
    [-0.00226458, 0.05603239, 0.00285505],
    [0.04105436, -0.06028581, 0.12204243],
    [-0.03483987, -0.06210566, 0.13032329],
    [-0.01339020, 0.21163553, -0.03346758],
    [0.07170245, 0.11399969, -0.01889817],
    [-0.08295366, 0.11247234, -0.02370739],
    [0.01011321, 0.08893734, 0.05040987],
    [0.12292141, 0.04520509, -0.01904600],
    [-0.11322832, 0.04685326, -0.00847207],
    [0.25533190, -0.01564902, -0.02294649],
    [-0.26012748, -0.01436928, -0.03126873],
    [0.26570925, 0.01269811, -0.00737473],
    [-0.26910836, 0.00679372, -0.00602676],
    [0.08669055, -0.01063603, -0.01559429],
    [-0.08875370, -0.00865157, -0.01010708],
], dtype=np.float64)

NUM_JOINTS = len(JOINT_NAMES)
JOINT_INDEX = {name: i for i, name in enumerate(JOINT_NAMES)}

# Joints that touch the floor, for foot-contact labels and foot-skating metrics.
FOOT_JOINTS = tuple(JOINT_INDEX[name] for name in ("Left_Ankle", "Right_Ankle", "Left_Foot", "Right_Foot"))

# Left/right pairs, for mirroring.
MIRROR_INDEX = tuple(JOINT_INDEX[n.replace("Left_", "#").replace("Right_", "Left_").replace("#", "Right_")]
                     for n in JOINT_NAMES)


def rest_positions(offsets: np.ndarray = REST_OFFSETS, parents: tuple[int, ...] = PARENTS) -> np.ndarray:
    """(J, 3) joint positions of a skeleton with every rotation at identity."""
    rest = np.zeros((len(parents), 3))
    for j, p in enumerate(parents):
        rest[j] = offsets[j] if p < 0 else rest[p] + offsets[j]
    return rest
