"""The contact-consistency training term (models.contact), alone and wired into both choreographers."""
import pytest
import torch
from test_codes import STATS, one_thread  # noqa: F401 - tiny models' normalizer; one torch thread (autouse)

from onbeat.core.music import FEATURE_DIM
from onbeat.core.representation import CONTACT_SLICE, POSE_DIM
from onbeat.core.skeleton import FOOT_JOINTS, NUM_JOINTS
from onbeat.models.badm import BADM
from onbeat.models.codes import Codes
from onbeat.models.contact import contact_consistency


def feet_moving(cm_per_frame, frames=10):
    """(1, T, 24, 3) positions whose foot joints move `cm_per_frame` along x, the rest still."""
    positions = torch.zeros(1, frames, NUM_JOINTS, 3)
    positions[:, :, list(FOOT_JOINTS), 0] = (cm_per_frame / 100.0 * torch.arange(frames))[None, :, None]
    return positions


def test_consistency_is_the_squared_speed_of_the_feet_said_to_be_down():
    down, up = torch.ones(1, 10, 4), torch.zeros(1, 10, 4)
    assert float(contact_consistency(feet_moving(0.0), down)) == 0.0  # planted and still
    assert float(contact_consistency(feet_moving(2.0), up)) == 0.0  # moving, and said to be up
    assert float(contact_consistency(feet_moving(2.0), down)) == pytest.approx(4.0)  # 2 cm a frame while down
    assert float(contact_consistency(feet_moving(2.0), 3.0 * down)) == pytest.approx(4.0)  # contacts clamp to 1


def contact_batch(size=4, frames=32, seed=0):
    """Raw rows of small random movements with every foot labelled down (the term has something to fix)."""
    generator = torch.Generator().manual_seed(seed)
    motion = 0.3 * torch.randn(size, frames, POSE_DIM, generator=generator)
    motion[..., CONTACT_SLICE] = 1.0
    return {"motion": motion, "music": torch.randn(size, frames, FEATURE_DIM, generator=generator),
            "has_music": torch.ones(size)}


def trained_consistency(build, weight, steps=25):
    """The consistency term after `steps` Adam steps on a tiny model's whole loss with that term's `weight`."""
    torch.manual_seed(0)
    model = build(weight)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    batch = contact_batch()
    for _ in range(steps):
        loss, logs = model.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.manual_seed(1)
    return model.loss(batch)[1]["consistency"]


@pytest.mark.slow
@pytest.mark.parametrize("build", [
    lambda weight: BADM.from_config({**BADM.PRESETS["tiny"], "consistency_weight": weight}, STATS),
    lambda weight: Codes.from_config({**Codes.PRESETS["tiny"], "consistency_weight": weight}, STATS),
], ids=["badm", "codes-vq"])
def test_both_choreographers_learn_to_keep_the_feet_they_put_down_still(build):
    without, with_term = trained_consistency(build, 0.0), trained_consistency(build, 0.5)
    print(f"consistency after training: without the term {without:.3f}, with it {with_term:.3f}")
    assert with_term < 0.7 * without
