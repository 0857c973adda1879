"""BADM-style choreographer: sliced, bidirectional, autoregressive diffusion over the motion rows (torch).

The dance is cut into slices of S frames (30 fps). One denoiser call sees 3S frames as tokens:

    [ context: clean slice k-1 | noisy slice k (+ its music, + key pose) | noisy slice k+1 (+ its music) ]

and predicts the clean slices k and k+1 (x0-prediction). Slices k and k+1 are denoised in lockstep at staggered
noise levels (see `badm_sampler`), which is what makes it bidirectional: slice k is generated knowing where
slice k+1 is heading. A small 1D-conv local decoder over the 3S frames refines the prediction, smoothing the join
between slice k-1 and k. Beat information (Beat-It) comes in through the music features' beat columns (phase and
nearest-beat distance); a key pose (a target pose at some frames of slice k, with a mask) can be requested.

Besides x0 the losses weigh velocities of the rows and of the joints (forward kinematics: jitter near the root
shows at the hands), foot sliding where the real dance has contact, feet standing still where the model says they
are down (`models.contact`), and beat alignment.

Anti-freeze measures in training: noise on the context slice, the context replaced now and then by the model's own
prediction (scheduled sampling), music dropout, and a beat-alignment term that rewards moving between beats and
settling on them, relative to the dance's own mean speed (so it cannot be won by standing still).

The exported graph is `step_module()`:

    forward(noisy (B,S,D), t (B,), context (B,S,D), next_noisy (B,S,D), music (B,2S,F), key_pose (B,S,D),
            key_mask (B,S) [, music_mask (B,2S,2), style (B,) int64]) -> (x0 (B,S,D), next_x0 (B,S,D))

poses normalized with `metadata()["pose_mean"/"pose_std"]`, music raw (all zeros = no music), t the lockstep
position u in [0, 1], all float32. A model trained on a styled dataset (config `styles` > 0, set by the dataset;
metadata "styles" lists the names of its ids) takes two more inputs: the music mask ([audio, beat] per row, 1
where those columns are real: `onbeat.core.music`) and the style id (`onbeat.core.styles`; 0 = freestyle, "any",
which training also shows it for a share of the samples). Without them (`styles` = 0) the graph has the first
seven inputs only, as before. `metadata()` holds everything the runtime needs besides the weights.
"""
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from onbeat.choreographers import badm_sampler as sampler
from onbeat.choreographers.conditioning import conditioned
from onbeat.core.music import FEATURE_DIM, FEATURE_FPS, FEATURE_NAMES, MASK_COLUMN_GROUP, MASK_GROUPS
from onbeat.core.representation import CONTACT_SLICE, POSE_DIM
from onbeat.core.skeleton import FOOT_JOINTS, REST_OFFSETS
from onbeat.core.styles import FREESTYLE, STYLES
from onbeat.models.checkpoint import config_from
from onbeat.models.contact import contact_consistency, row_positions

VERSION = 1


@dataclass
class BADMConfig:
    slice_frames: int = 8
    width: int = 128
    layers: int = 4
    heads: int = 4
    decoder_width: int = 128
    ddim_steps: int = 4
    # training
    next_weight: float = 0.25  # loss share of the (noisier) slice k+1 prediction
    velocity_weight: float = 1.0
    kinematic_weight: float = 0.01
    contact_weight: float = 0.5
    consistency_weight: float = 0.5  # the feet the model says are down stand still (models.contact)
    beat_weight: float = 0.05
    context_noise: float = 0.1  # max std (normalized units) of the noise put on the context slice
    context_dropout: float = 0.05  # context replaced by the mean pose, as at a stream's start
    scheduled_sampling: float = 0.3  # share of samples whose context is the model's own prediction
    music_dropout: float = 0.1
    key_pose_rate: float = 0.2  # share of samples given a key pose
    styles: int = 0  # style ids embedded (the dataset sets it); > 0 also makes the music mask an input
    style_dropout: float = 0.1  # share of samples shown as freestyle ("any style"), so that id works at run time


PRESETS = {
    "small": {},
    "tiny": {"width": 32, "layers": 1, "heads": 2, "decoder_width": 16, "slice_frames": 4},
}


class Block(nn.Module):
    """Pre-norm transformer block with full (bidirectional) attention over the 3S frames."""

    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, x):
        batch, tokens, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(batch, tokens, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        attention = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(width // self.heads), dim=-1)
        x = x + self.proj((attention @ v).transpose(1, 2).reshape(batch, tokens, width))
        return x + self.mlp(self.norm2(x))


class Denoiser(nn.Module):
    """The step the sampler calls; see the module docstring for its inputs and outputs."""

    def __init__(self, cfg, music_mean, music_std):
        super().__init__()
        width, frames = cfg.width, cfg.slice_frames
        self.frames = frames
        self.register_buffer("music_mean", torch.as_tensor(music_mean, dtype=torch.float32))
        self.register_buffer("music_std", torch.as_tensor(music_std, dtype=torch.float32))
        self.pose_in = nn.Linear(POSE_DIM, width)
        self.music_in = nn.Linear(FEATURE_DIM, width)
        self.register_buffer("mask_columns", torch.as_tensor(MASK_COLUMN_GROUP), persistent=False)
        self.conditioned = cfg.styles > 0
        if self.conditioned:  # the mask's own embedding stands in for "no music" (an all-zero mask)
            self.style_in = nn.Embedding(cfg.styles, width)
            self.mask_in = nn.Linear(len(MASK_GROUPS), width)
        else:
            self.no_music = nn.Parameter(torch.zeros(width))
        self.key_in = nn.Linear(POSE_DIM + 1, width)
        self.position = nn.Parameter(0.02 * torch.randn(3 * frames, width))  # role (context/k/k+1) and frame
        self.time = nn.Sequential(nn.Linear(64, width), nn.GELU(), nn.Linear(width, width))
        self.blocks = nn.ModuleList(Block(width, cfg.heads) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(width)
        self.out = nn.Linear(width, POSE_DIM)
        # Local decoder: a residual 1D conv over context + both predicted slices, smoothing the joins.
        self.local = nn.Sequential(nn.Conv1d(POSE_DIM, cfg.decoder_width, 5, padding=2), nn.GELU(),
                                   nn.Conv1d(cfg.decoder_width, POSE_DIM, 5, padding=2))
        nn.init.zeros_(self.local[-1].weight)
        nn.init.zeros_(self.local[-1].bias)

    def time_embedding(self, t):
        half = torch.arange(32, device=t.device, dtype=torch.float32)
        angles = 1000.0 * t[:, None] * torch.exp(-math.log(10000.0) * half / 32)[None]
        return self.time(torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1))

    def music_tokens(self, music, music_mask):
        normalized = (music - self.music_mean) / self.music_std
        if not self.conditioned:
            present = (music.abs().sum(-1, keepdim=True) > 0).to(music.dtype)  # all-zero rows mean no music
            return present * self.music_in(normalized) + (1 - present) * self.no_music
        return self.music_in(normalized * music_mask[..., self.mask_columns]) + self.mask_in(music_mask)

    def forward(self, noisy, t, context, next_noisy, music, key_pose, key_mask, music_mask=None, style=None):
        if self.conditioned and music_mask is None:  # as the live rows: real wherever a row is not all zero
            music_mask = (music.abs().sum(-1, keepdim=True) > 0).to(music.dtype).expand(-1, -1, len(MASK_GROUPS))
        music_tokens = self.music_tokens(music, music_mask)
        key = self.key_in(torch.cat([key_pose * key_mask[..., None], key_mask[..., None]], dim=-1))
        x = torch.cat([self.pose_in(context),
                       self.pose_in(noisy) + music_tokens[:, :self.frames] + key,
                       self.pose_in(next_noisy) + music_tokens[:, self.frames:]], dim=1)
        condition = self.time_embedding(t)
        if self.conditioned:
            style = torch.full_like(t, FREESTYLE, dtype=torch.long) if style is None else style
            condition = condition + self.style_in(style)
        x = x + self.position[None] + condition[:, None]
        for block in self.blocks:
            x = block(x)
        predicted = self.out(self.norm(x[:, self.frames:]))  # (B, 2S, D)
        joined = torch.cat([context, predicted], dim=1).transpose(1, 2)
        predicted = predicted + self.local(joined).transpose(1, 2)[:, self.frames:]
        return predicted[:, :self.frames], predicted[:, self.frames:]


class BADM(nn.Module):
    """Denoiser + training losses + the normalizer. Build with `from_config(cfg, stats)`."""

    PRESETS = PRESETS
    CONFIG = BADMConfig  # the config's keys and types (the trainer checks config files against them)
    BATCH_AXES: dict[str, int | None] = {}  # every input of the step is batched on axis 0 (`exporters.onnx_export`)

    def __init__(self, cfg, stats):
        super().__init__()
        self.cfg = cfg
        self.denoiser = Denoiser(cfg, stats["music_mean"], stats["music_std"])
        self.register_buffer("pose_mean", torch.as_tensor(stats["pose_mean"], dtype=torch.float32))
        self.register_buffer("pose_std", torch.as_tensor(stats["pose_std"], dtype=torch.float32))
        self.register_buffer("offsets", torch.as_tensor(REST_OFFSETS, dtype=torch.float32))

    @classmethod
    def from_config(cls, cfg, stats):
        """cfg: a dict (unknown keys, e.g. the trainer's, are ignored); stats: the dataset's normalizer arrays."""
        return cls(config_from(BADMConfig, cfg), stats)

    # --- the kind's export contract (see onbeat.choreographers.kinds) ----------------------------------------
    def export_graphs(self):
        """{graph: (module, example inputs, output names)}: one batch-1 call of the denoiser."""
        frames, dim = self.cfg.slice_frames, POSE_DIM
        generator = torch.Generator().manual_seed(0)
        pose = lambda: torch.randn(1, frames, dim, generator=generator)  # noqa: E731
        example = {"noisy": pose(), "t": torch.tensor([0.5]), "context": pose(), "next_noisy": pose(),
                   "music": torch.rand(1, 2 * frames, FEATURE_DIM, generator=generator), "key_pose": pose(),
                   "key_mask": torch.zeros(1, frames)}
        if self.denoiser.conditioned:  # a styled model: the music mask and the style id (module docstring)
            example.update(music_mask=torch.ones(1, 2 * frames, len(MASK_GROUPS)),
                           style=torch.zeros(1, dtype=torch.long))
        return {"step": (self.denoiser, example, ["x0", "next_x0"])}

    def step_callables(self):
        """{graph: numpy callable} taking the graph's own inputs (the runtime fills style and mask in)."""
        return {"step": self._denoise}

    @staticmethod
    def parity_inputs(graph, metadata, rng):
        """Random valid arguments for one call of `graph` (a key pose on the middle frame; a styled model's mask
        with a missing audio group and a style other than freestyle)."""
        frames, dim = metadata["slice_frames"], metadata["pose_dim"]
        pose = lambda: rng.standard_normal((1, frames, dim)).astype(np.float32)  # noqa: E731
        mask = np.zeros((1, frames), np.float32)
        mask[0, frames // 2] = 1.0
        inputs = (pose(), rng.random(1).astype(np.float32), pose(), pose(),
                  rng.random((1, 2 * frames, FEATURE_DIM)).astype(np.float32), pose(), mask)
        return inputs + styled_parity_inputs(metadata, 2 * frames, rng)

    def metadata(self):
        return {"model": "badm", "version": VERSION, "fps": FEATURE_FPS, "slice_frames": self.cfg.slice_frames,
                "pose_dim": POSE_DIM, "feature_dim": FEATURE_DIM, "feature_names": list(FEATURE_NAMES),
                "styles": list(STYLES[:self.cfg.styles]), "music_mask": list(MASK_GROUPS) if self.cfg.styles else [],
                "ddim_steps": self.cfg.ddim_steps, "lockstep_mid": sampler.MID,
                "pose_mean": self.pose_mean.tolist(), "pose_std": self.pose_std.tolist(),
                "config": asdict(self.cfg)}

    # --- generation -----------------------------------------------------------------------------------------
    def _denoise(self, *arrays, **named):
        """The denoiser on numpy arrays (its inputs in order, or by name)."""
        with torch.no_grad():
            x0, next_x0 = self.denoiser(*(torch.from_numpy(np.asarray(a)) for a in arrays),
                                        **{k: torch.from_numpy(np.asarray(v)) for k, v in named.items()})
        return x0.numpy(), next_x0.numpy()

    def denoise_fn(self, style=None):
        """The sampler's numpy `denoise` callable, backed by this torch model (dancing `style`, a name or id)."""
        return conditioned(self._denoise, self.metadata(), sampler.MUSIC_INPUT, style)

    def generate(self, music, seed=0, steps=None, style=None):
        """(T, POSE_DIM) raw rows dancing to (T, FEATURE_DIM) raw music rows."""
        self.eval()
        return sampler.generate(self.denoise_fn(style), music, seed, self.cfg.slice_frames, self.pose_mean.numpy(),
                                self.pose_std.numpy(), steps or self.cfg.ddim_steps)

    # --- training -------------------------------------------------------------------------------------------
    def loss(self, batch):
        """batch: motion (B, W, D) raw rows, music (B, W, F) raw, music_mask (B, W, 2), has_music (B,), style (B,)
        int64. Returns (loss, logs). An unconditioned model (`styles` = 0) sees music only where the window has
        its song (has_music), as before the mask existed."""
        cfg, frames = self.cfg, self.cfg.slice_frames
        rows = (batch["motion"] - self.pose_mean) / self.pose_std
        size, window, _ = rows.shape
        device = rows.device
        if self.denoiser.conditioned:
            mask = batch["music_mask"]
            style = torch.where(torch.rand(size, device=device) < cfg.style_dropout, FREESTYLE, batch["style"])
        else:
            mask = batch["has_music"][:, None, None].expand(-1, window, len(MASK_GROUPS))
            style = None
        music = batch["music"] * mask[..., self.denoiser.mask_columns]
        # A random place in each window: pre-context, context (k-1), slice k, slice k+1.
        start = torch.randint(0, window - 4 * frames + 1, (size,), device=device)
        index = start[:, None] + torch.arange(4 * frames, device=device)
        take = lambda x: torch.gather(x, 1, index[..., None].expand(-1, -1, x.shape[-1]))  # noqa: E731
        rows4, music4, mask4 = take(rows), take(music), take(mask)
        pre_context, context, target, target_next = rows4.split(frames, dim=1)
        dropped = torch.rand(size, device=device) < cfg.music_dropout
        kept = (~dropped)[:, None, None].to(music.dtype)
        slice_music, slice_mask = music4[:, 2 * frames:] * kept, mask4[:, 2 * frames:] * kept
        conditioning = {"music_mask": slice_mask, "style": style} if self.denoiser.conditioned else {}

        context = self.scheduled_context(pre_context, context, music4[:, frames:3 * frames],
                                         {"music_mask": mask4[:, frames:3 * frames], "style": style}
                                         if self.denoiser.conditioned else {})
        context = context + cfg.context_noise * torch.rand(size, 1, 1, device=device) * torch.randn_like(context)
        context = torch.where((torch.rand(size, 1, 1, device=device) < cfg.context_dropout), 0.0, context)

        u = torch.rand(size, device=device)
        noisy, next_noisy = self.add_noise(target, target_next, u)
        key_pose, key_mask = self.random_key_pose(target)
        x0, next_x0 = self.denoiser(noisy, u, context, next_noisy, slice_music, key_pose, key_mask, **conditioning)

        logs = {"x0": F.mse_loss(x0, target), "next": F.mse_loss(next_x0, target_next)}
        logs["velocity"] = F.mse_loss(torch.diff(torch.cat([context, x0], 1), dim=1),
                                      torch.diff(torch.cat([context, target], 1), dim=1))
        raw, raw_target = x0 * self.pose_std + self.pose_mean, target * self.pose_std + self.pose_mean
        positions = self.positions(raw)
        logs["kinematic"] = self.kinematic(torch.cat([context, x0], 1), torch.cat([context, target], 1))
        logs["contact"] = self.foot_sliding(positions, raw_target[..., CONTACT_SLICE])
        logs["consistency"] = contact_consistency(positions, raw[..., CONTACT_SLICE])
        beats = slice_mask[:, :frames, MASK_GROUPS.index("beat")].amin(dim=1)  # the slice's beat columns are real
        logs["beat"] = self.beat_alignment(positions, slice_music[:, :frames], beats)
        loss = (logs["x0"] + cfg.next_weight * logs["next"] + cfg.velocity_weight * logs["velocity"]
                + cfg.kinematic_weight * logs["kinematic"] + cfg.contact_weight * logs["contact"]
                + cfg.consistency_weight * logs["consistency"]
                + cfg.beat_weight * logs["beat"])
        return loss, {k: float(v.detach()) for k, v in logs.items()}

    def add_noise(self, target, target_next, u):
        level, next_level = sampler.lockstep_levels(u.detach().cpu().numpy())
        alpha = torch.as_tensor(sampler.alpha_bar(level), dtype=torch.float32, device=u.device)[:, None, None]
        alpha_next = torch.as_tensor(sampler.alpha_bar(next_level), dtype=torch.float32, device=u.device)[:, None, None]
        noisy = alpha.sqrt() * target + (1 - alpha).sqrt() * torch.randn_like(target)
        return noisy, alpha_next.sqrt() * target_next + (1 - alpha_next).sqrt() * torch.randn_like(target_next)

    def scheduled_context(self, pre_context, context, music, conditioning):
        """Scheduled sampling: for a share of samples, the context is what the model itself makes of that slice
        (one step from its starting noise level) instead of the real one, so it learns to continue its own
        imperfect output rather than drifting into a frozen pose."""
        chosen = torch.rand(len(context), device=context.device) < self.cfg.scheduled_sampling
        if not chosen.any():
            return context
        with torch.no_grad():
            u = torch.ones(len(context), device=context.device)
            noisy, next_noisy = self.add_noise(context, context, u)
            zeros = torch.zeros_like(context)
            own, _ = self.denoiser(noisy, u, pre_context, next_noisy, music, zeros, zeros[..., 0], **conditioning)
        return torch.where(chosen[:, None, None], own, context)

    def random_key_pose(self, target):
        size, frames, _ = target.shape
        mask = torch.zeros(size, frames, device=target.device)
        chosen = torch.rand(size, device=target.device) < self.cfg.key_pose_rate
        mask[torch.arange(size), torch.randint(0, frames, (size,))] = chosen.float()
        return target * mask[..., None], mask

    def positions(self, raw):
        """(B, T, 24, 3) joint positions of raw rows in the slice's heading frame, root trajectory integrated
        from the velocities (the heading's turn within a slice is ignored: a slice lasts a fraction of a second)."""
        return row_positions(raw, self.offsets)

    def kinematic(self, rows, target_rows):
        """Joint velocity and acceleration errors in cm/frame: small rotation noise near the root is invisible in
        the rows but shakes the hands and head at the end of the chain, and this is where it is measured."""
        def derivatives(normalized):
            positions = 100 * self.positions(normalized * self.pose_std + self.pose_mean)
            velocity = torch.diff(positions, dim=1)
            return velocity, torch.diff(velocity, dim=1)
        (velocity, acceleration), (true_velocity, true_acceleration) = derivatives(rows), derivatives(target_rows)
        return F.mse_loss(velocity, true_velocity) + F.mse_loss(acceleration, true_acceleration)

    @staticmethod
    def foot_sliding(positions, contacts):
        """Mean squared foot speed (m/frame) where the real dance has the foot planted."""
        feet, contacts = positions[:, :, list(FOOT_JOINTS)], contacts.clamp(0.0, 1.0)
        speed2 = (torch.diff(feet, dim=1) ** 2).sum(-1)
        return (speed2 * contacts[:, 1:]).sum() / contacts[:, 1:].sum().clamp(min=1.0) * 100.0

    @staticmethod
    def beat_alignment(positions, music, has_music):
        """Beat-It style: mean joint speed near beats divided by the mean joint speed; lower = settling on beats.
        Beat proximity comes from the beat-phase columns (phase 0 = on a beat)."""
        if not bool(has_music.any()):
            return positions.new_zeros(())
        sin, cos = music[..., FEATURE_NAMES.index("beat_phase_sin")], music[..., FEATURE_NAMES.index("beat_phase_cos")]
        phase = torch.remainder(torch.atan2(sin, cos) / (2 * math.pi), 1.0)
        distance = torch.minimum(phase, 1 - phase)
        near = torch.exp(-0.5 * (distance / 0.1) ** 2)[:, 1:] * has_music[:, None]
        speed = torch.linalg.norm(torch.diff(positions, dim=1), dim=-1).mean(-1)  # (B, T-1)
        weighted = (near * speed).sum() / near.sum().clamp(min=1e-6)
        average = (speed * has_music[:, None]).sum() / (has_music.sum() * speed.shape[1]).clamp(min=1e-6)
        return weighted / (average + 1e-4)


def styled_parity_inputs(metadata, rows, rng):
    """The music mask (rows of beats only, the audio group missing) and a style id other than freestyle for one
    parity call of a styled model's graph; () for a model without those inputs."""
    if not metadata.get("styles"):
        return ()
    mask = np.ones((1, rows, len(MASK_GROUPS)), np.float32)
    mask[0, rows // 2:, MASK_GROUPS.index("audio")] = 0.0
    return mask, rng.integers(1, len(metadata["styles"]), (1,)).astype(np.int64)
