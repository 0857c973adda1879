"""Foot contacts in training, one term both choreographers call: the contacts a model predicts must agree with
how its feet move.

`contact_consistency(positions, contacts)`: the mean squared speed of the foot joints weighted by the contact the
model itself predicts for them (EDGE's foot-contact loss, soft): a foot the model says is down must stay put,
and a foot that moves must not be said to be down. The live runtime pins the feet the models say are down
(`choreographers.feet`); contacts that agree with the motion are pins that do not drag the legs. The
reconstruction losses keep the contacts on the real labels, so the term cannot win by predicting none.

`row_positions(raw)`: joint positions of raw motion rows (torch forward kinematics), what the term needs.
"""
import torch
import torch.nn.functional as F

from onbeat.core.music import FEATURE_FPS
from onbeat.core.representation import ROTATION_SLICE
from onbeat.core.skeleton import FOOT_JOINTS, NUM_JOINTS, PARENTS, REST_OFFSETS


def six_d_to_matrix(d6: torch.Tensor) -> torch.Tensor:
    """Torch twin of `rotations.matrix_from_6d` (Gram-Schmidt), (..., 6) -> (..., 3, 3)."""
    a, b = d6[..., :3], d6[..., 3:]
    x = F.normalize(a, dim=-1)
    y = F.normalize(b - (x * b).sum(-1, keepdim=True) * x, dim=-1)
    return torch.stack([x, y, torch.cross(x, y, dim=-1)], dim=-1)


def row_positions(raw: torch.Tensor, offsets: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T, 24, 3) joint positions of raw rows (B, T, POSE_DIM) in the window's heading frame, the root
    trajectory integrated from the velocities (the heading's turn within a window is ignored: training windows
    last a fraction of a second). `offsets`: the skeleton's bones (default the canonical one)."""
    if offsets is None:
        offsets = torch.as_tensor(REST_OFFSETS, dtype=raw.dtype, device=raw.device)
    size, frames, _ = raw.shape
    matrices = six_d_to_matrix(raw[..., ROTATION_SLICE].reshape(size, frames, NUM_JOINTS, 6))
    world_rot, joints = [matrices[:, :, 0]], [torch.zeros(size, frames, 3, device=raw.device, dtype=raw.dtype)]
    for j in range(1, NUM_JOINTS):
        parent = PARENTS[j]
        joints.append(joints[parent] + world_rot[parent] @ offsets[j])
        world_rot.append(world_rot[parent] @ matrices[:, :, j])
    zeros = torch.zeros_like(raw[..., 0])
    ground = torch.cumsum(torch.stack([raw[..., 0], zeros, raw[..., 1]], dim=-1), dim=1) / FEATURE_FPS
    root = ground + torch.stack([zeros, raw[..., 2], zeros], dim=-1)
    return torch.stack(joints, dim=2) + root[:, :, None]


def contact_consistency(positions: torch.Tensor, contacts: torch.Tensor) -> torch.Tensor:
    """Mean squared speed (cm per frame, squared) of the foot joints (`skeleton.FOOT_JOINTS`) of `positions`
    (B, T, 24, 3, metres), weighted by the predicted `contacts` (B, T, 4) clamped to 0..1: 0 when every foot
    said to be down stands still."""
    feet, contacts = positions[:, :, list(FOOT_JOINTS)], contacts.clamp(0.0, 1.0)[:, 1:]
    speed2 = (100.0 * torch.diff(feet, dim=1)).pow(2).sum(-1)
    return (speed2 * contacts).sum() / contacts.sum().clamp(min=1.0)
