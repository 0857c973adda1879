"""Bailando-style choreographer (torch): a VQ-VAE "choreographic memory" of pose codes + a music-conditioned GPT.

VQ-VAE: the motion rows are split into a lower body (root velocity and height, pelvis and legs, foot contacts) and
an upper body (spine, arms, head); each half has its own 1D-conv encoder (time downsampled x `rate`), EMA codebook
(commitment loss, dead codes restarted from the batch so it does not collapse) and a *causal* decoder, so the frames
of code t depend only on codes <= t and a stream decodes exactly, one code at a time.

GPT: a small causal transformer over code steps. The token of step t is
    emb_up(code_up[t-1]) + emb_down(code_down[t-1]) + music_in(the `rate` raw music rows of step t),
and two heads predict code_up[t] and code_down[t]. The music rows carry the beat columns (Beat-It's beat phase and
nearest-beat distance), so the model knows where in the beat each step falls. Attention is limited to the last
`context` steps with ALiBi distance biases, which is exactly what the streaming step sees: a ring-buffer KV cache of
`context` slots, so a dance can go on forever with a fixed-size state.

Exported graphs (the numpy loop around them is `codes_sampler`, shared by torch eval and the ONNX runtime):

    gpt_step_module():  forward(prev_up (B,) int64, prev_down (B,) int64, music (B, rate, F) float32 raw rows,
                                kv (layers, 2, B, heads, context, head_dim) float32, pos (1,) int64
                                [, music_mask (B, rate, 2) float32, style (B,) int64])
                        -> logits_up (B, codebook), logits_down (B, codebook), kv (same shape as the input kv)
        prev_* = the previous step's codes (= codebook size, the start token, at pos 0); pos = the step number
        (0, 1, 2, ... without bound); music all zeros = no music. A model trained on a styled dataset (config
        `styles` > 0; metadata "styles" names its ids) also takes the music mask ([audio, beat] per row,
        `onbeat.core.music`) and the style id (`onbeat.core.styles`, 0 = freestyle); the others do not.
    decoder_module():   forward(codes_up (B, decode_window) int64, codes_down (B, decode_window) int64)
                        -> pose (B, slice_codes * rate, POSE_DIM) float32 raw rows (not normalized): the frames of
                        the last `slice_codes` codes; decode_window = decode_context + slice_codes - 1.

`metadata()` holds everything else the runtime needs (fps, rate, codebook sizes, cache shape, feature names...).
Training has two stages on the shared trainer's windows (`loss(batch)`): stage "vq" trains the VQ-VAE, stage "gpt"
trains the GPT on codes of the frozen VQ-VAE loaded from `vq_checkpoint`.
"""
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from onbeat.choreographers import codes_sampler as sampler
from onbeat.choreographers.conditioning import conditioned
from onbeat.core.errors import OnbeatError
from onbeat.core.music import FEATURE_DIM, FEATURE_FPS, FEATURE_NAMES, MASK_COLUMN_GROUP, MASK_GROUPS
from onbeat.core.representation import CONTACT_SLICE, POSE_DIM, ROOT_DIMS, ROTATION_SLICE
from onbeat.core.skeleton import JOINT_INDEX, NUM_JOINTS
from onbeat.core.styles import FREESTYLE, STYLES
from onbeat.models.badm import styled_parity_inputs
from onbeat.models.checkpoint import config_from, load_model
from onbeat.models.contact import contact_consistency, row_positions

VERSION = 1

LOWER_JOINTS = tuple(JOINT_INDEX[n] for n in ("Pelvis", "Left_Hip", "Right_Hip", "Left_Knee", "Right_Knee",
                                              "Left_Ankle", "Right_Ankle", "Left_Foot", "Right_Foot"))
UPPER_JOINTS = tuple(j for j in range(NUM_JOINTS) if j not in LOWER_JOINTS)


def _joint_columns(joints):
    return [ROTATION_SLICE.start + 6 * j + i for j in joints for i in range(6)]


LOWER_COLUMNS = (list(range(ROOT_DIMS)) + _joint_columns(LOWER_JOINTS)
                 + list(range(CONTACT_SLICE.start, CONTACT_SLICE.stop)))
UPPER_COLUMNS = _joint_columns(UPPER_JOINTS)


@dataclass
class CodesConfig:
    stage: str = "vq"  # "vq": train the VQ-VAE; "gpt": train the GPT on the frozen VQ-VAE of vq_checkpoint
    vq_checkpoint: str = ""
    rate: int = 4  # frames per code (temporal downsampling, a power of 2)
    width: int = 64  # conv channels
    code_dim: int = 64
    codebook_size: int = 256  # per body half
    ema_decay: float = 0.99
    commitment: float = 0.25
    velocity_weight: float = 1.0
    consistency_weight: float = 0.5  # stage vq: the feet the decoder says are down stand still (models.contact)
    vq_window: int = 120  # frames of each training window the VQ-VAE stage reconstructs (a random crop)
    layers: int = 3
    heads: int = 4
    embd: int = 128
    context: int = 24  # code steps the GPT attends to (= KV cache slots): 24 x 4 frames = 3.2 s
    decode_context: int = 8  # codes of context the streaming decoder needs (its receptive field at rate 4, tested)
    slice_codes: int = 2  # codes decoded per decoder call (a streaming slice: slice_codes * rate frames)
    dropout: float = 0.1
    music_dropout: float = 0.1
    styles: int = 0  # style ids the GPT embeds (the dataset sets it); > 0 also makes the music mask an input
    style_dropout: float = 0.1  # share of training samples shown as freestyle ("any style")
    # sampling defaults (stored in the metadata; the runtime may override them)
    temperature: float = 1.0
    top_k: int = 12
    repeat_window: int = 8
    repeat_penalty: float = 1.0
    smoothing: float = 0.5  # output low-pass (see codes_sampler)

    # Derived sizes (properties, so not config keys): each used by more than one graph or by the metadata.
    @property
    def slice_frames(self):
        return self.rate * self.slice_codes

    @property
    def decode_window(self):
        return self.decode_context + self.slice_codes - 1

    @property
    def head_dim(self):
        return self.embd // self.heads


PRESETS = {
    "small": {},
    "tiny": {"width": 16, "code_dim": 8, "codebook_size": 16, "layers": 1, "heads": 2, "embd": 16, "context": 6},
}


# --- VQ-VAE -----------------------------------------------------------------------------------------------------
class CausalConv(nn.Conv1d):
    """Conv1d that only looks back (left padding repeats the first frame), so streaming decoding is exact."""

    def forward(self, x):
        pad = (self.kernel_size[0] - 1) * self.dilation[0]
        return super().forward(F.pad(x, (pad, 0), mode="replicate") if pad else x)


class ResBlock(nn.Module):
    def __init__(self, width, conv):
        super().__init__()
        self.body = nn.Sequential(nn.GELU(), conv(width, width, 3), nn.GELU(), conv(width, width, 1))

    def forward(self, x):
        return x + self.body(x)


def _centered_conv(cin, cout, kernel):
    return nn.Conv1d(cin, cout, kernel, padding=kernel // 2)


class Encoder(nn.Module):
    """(B, T, in) -> (B, T / rate, code_dim); non-causal (it sees whole windows)."""

    def __init__(self, dim_in, width, code_dim, rate):
        super().__init__()
        layers = [_centered_conv(dim_in, width, 3)]
        for _ in range(int(math.log2(rate))):
            layers += [ResBlock(width, _centered_conv), nn.Conv1d(width, width, 4, stride=2, padding=1)]
        layers += [ResBlock(width, _centered_conv), nn.GELU(), nn.Conv1d(width, code_dim, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x.transpose(1, 2)).transpose(1, 2)


class Decoder(nn.Module):
    """(B, n, code_dim) -> (B, n * rate, out); causal at every layer."""

    def __init__(self, code_dim, width, dim_out, rate):
        super().__init__()
        layers = [CausalConv(code_dim, width, 3), ResBlock(width, CausalConv)]
        for _ in range(int(math.log2(rate))):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), CausalConv(width, width, 3),
                       ResBlock(width, CausalConv)]
        layers += [nn.GELU(), nn.Conv1d(width, dim_out, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z.transpose(1, 2)).transpose(1, 2)


class Codebook(nn.Module):
    """Vector quantizer with EMA updates (van den Oord et al.; Razavi et al.) and dead-code restart (Jukebox)."""

    def __init__(self, size, dim, decay, restart_below=1.0):
        super().__init__()
        self.decay, self.restart_below = decay, restart_below
        self.register_buffer("embedding", torch.randn(size, dim))
        self.register_buffer("cluster_size", torch.ones(size))
        self.register_buffer("embedding_sum", self.embedding.clone())
        self.register_buffer("initialized", torch.tensor(False))

    def nearest(self, z):
        """(..., dim) -> (...) int64 code of the nearest codebook vector."""
        flat = z.reshape(-1, z.shape[-1])
        distance = (flat ** 2).sum(1, keepdim=True) - 2 * flat @ self.embedding.T + (self.embedding ** 2).sum(1)[None]
        return distance.argmin(1).view(z.shape[:-1])

    def lookup(self, codes):
        return F.embedding(codes, self.embedding)

    def forward(self, z):
        """(B, n, dim) -> (quantized z with straight-through gradient, codes (B, n), commitment loss, usage)."""
        flat = z.detach().reshape(-1, z.shape[-1])
        if self.training and not self.initialized:
            self._restart(torch.ones(len(self.embedding), dtype=torch.bool, device=z.device), flat)
            self.initialized.fill_(True)
        codes = self.nearest(z)
        if self.training:
            self._ema_update(flat, codes.reshape(-1))
        quantized = self.lookup(codes)
        commitment = F.mse_loss(z, quantized.detach())
        usage = (codes.reshape(-1).bincount(minlength=len(self.embedding)) > 0).float().mean()
        return z + (quantized - z).detach(), codes, commitment, usage

    @torch.no_grad()
    def _ema_update(self, flat, codes):
        onehot = F.one_hot(codes, len(self.embedding)).type(flat.dtype)
        self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.embedding_sum.mul_(self.decay).add_(onehot.T @ flat, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + 1e-5) / (total + len(self.embedding) * 1e-5) * total
        self.embedding.copy_(self.embedding_sum / smoothed[:, None])
        self._restart(self.cluster_size < self.restart_below, flat)

    @torch.no_grad()
    def _restart(self, dead, flat):
        """Move dead codes onto random encoder outputs of this batch."""
        count = int(dead.sum())
        if count == 0:
            return
        picks = flat[torch.randint(0, len(flat), (count,), device=flat.device)]
        picks = picks + 0.01 * picks.std() * torch.randn_like(picks)
        self.embedding[dead] = picks
        self.embedding_sum[dead] = picks
        self.cluster_size[dead] = 1.0


class VQVAE(nn.Module):
    """Two body halves, each encoder -> codebook -> causal decoder, on normalized rows."""

    def __init__(self, cfg):
        super().__init__()
        self.register_buffer("lower_columns", torch.tensor(LOWER_COLUMNS))
        self.register_buffer("upper_columns", torch.tensor(UPPER_COLUMNS))
        self.register_buffer("inverse", torch.tensor(np.argsort(LOWER_COLUMNS + UPPER_COLUMNS)))
        halves = {"lower": len(LOWER_COLUMNS), "upper": len(UPPER_COLUMNS)}
        self.encoders = nn.ModuleDict({k: Encoder(d, cfg.width, cfg.code_dim, cfg.rate) for k, d in halves.items()})
        self.codebooks = nn.ModuleDict({k: Codebook(cfg.codebook_size, cfg.code_dim, cfg.ema_decay) for k in halves})
        self.decoders = nn.ModuleDict({k: Decoder(cfg.code_dim, cfg.width, d, cfg.rate) for k, d in halves.items()})

    def split(self, rows):
        return {"lower": rows[..., self.lower_columns], "upper": rows[..., self.upper_columns]}

    def join(self, lower, upper):
        return torch.cat([lower, upper], dim=-1)[..., self.inverse]

    def forward(self, rows):
        """Reconstruction (B, T, D), commitment loss, mean codebook usage."""
        out, commitment, usage = {}, 0.0, 0.0
        for half, x in self.split(rows).items():
            quantized, _, commit, used = self.codebooks[half](self.encoders[half](x))
            out[half] = self.decoders[half](quantized)
            commitment, usage = commitment + commit, usage + used / 2
        return self.join(out["lower"], out["upper"]), commitment, usage

    def encode(self, rows):
        """Normalized rows (B, T, D) -> codes (upper (B, T/rate), lower (B, T/rate))."""
        x = self.split(rows)
        return tuple(self.codebooks[h].nearest(self.encoders[h](x[h])) for h in ("upper", "lower"))

    def decode(self, codes_up, codes_down):
        """Codes (B, n) -> normalized rows (B, n * rate, D)."""
        lower = self.decoders["lower"](self.codebooks["lower"].lookup(codes_down))
        upper = self.decoders["upper"](self.codebooks["upper"].lookup(codes_up))
        return self.join(lower, upper)


# --- GPT --------------------------------------------------------------------------------------------------------
def alibi_slopes(heads):
    """Press et al.'s geometric head slopes: 2^(-8/H), 2^(-16/H), ..."""
    return torch.tensor([2.0 ** (-8.0 * (h + 1) / heads) for h in range(heads)])


class Block(nn.Module):
    """Pre-norm transformer block; attention gets an additive bias (ALiBi distances and the window mask)."""

    def __init__(self, cfg):
        super().__init__()
        self.heads = cfg.heads
        self.norm1, self.norm2 = nn.LayerNorm(cfg.embd), nn.LayerNorm(cfg.embd)
        self.qkv = nn.Linear(cfg.embd, 3 * cfg.embd)
        self.proj = nn.Linear(cfg.embd, cfg.embd)
        self.mlp = nn.Sequential(nn.Linear(cfg.embd, 4 * cfg.embd), nn.GELU(), nn.Linear(4 * cfg.embd, cfg.embd))
        self.drop = nn.Dropout(cfg.dropout)

    def qkv_heads(self, x):
        batch, tokens, width = x.shape
        return self.qkv(self.norm1(x)).view(batch, tokens, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)

    def attend(self, x, q, k, v, bias):
        batch, tokens, width = x.shape
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]) + bias, dim=-1)
        x = x + self.drop(self.proj((self.drop(weights) @ v).transpose(1, 2).reshape(batch, tokens, width)))
        return x + self.drop(self.mlp(self.norm2(x)))

    def forward(self, x, bias):
        q, k, v = self.qkv_heads(x)
        return self.attend(x, q, k, v, bias)

    def step(self, x, bias, cache, write):
        """One token (B, 1, E) against the ring-buffer cache (2, B, H, L, hd); `write` (L,) one-hot of its slot."""
        q, k, v = self.qkv_heads(x)
        keep = (1 - write)[:, None]
        k_all, v_all = cache[0] * keep + k * write[:, None], cache[1] * keep + v * write[:, None]
        return self.attend(x, q, k_all, v_all, bias), torch.stack([k_all, v_all])


class GPT(nn.Module):
    def __init__(self, cfg, music_mean, music_std):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("music_mean", torch.as_tensor(music_mean, dtype=torch.float32))
        self.register_buffer("music_std", torch.as_tensor(music_std, dtype=torch.float32))
        self.register_buffer("slopes", alibi_slopes(cfg.heads))
        self.embed_up = nn.Embedding(cfg.codebook_size + 1, cfg.embd)  # the last index is the start token
        self.embed_down = nn.Embedding(cfg.codebook_size + 1, cfg.embd)
        self.music_in = nn.Linear(cfg.rate * FEATURE_DIM, cfg.embd)
        self.register_buffer("mask_columns", torch.as_tensor(MASK_COLUMN_GROUP), persistent=False)
        self.conditioned = cfg.styles > 0
        if self.conditioned:  # the mask's own embedding stands in for "no music" (an all-zero mask)
            self.style_in = nn.Embedding(cfg.styles, cfg.embd)
            self.mask_in = nn.Linear(cfg.rate * len(MASK_GROUPS), cfg.embd)
        else:
            self.no_music = nn.Parameter(torch.zeros(cfg.embd))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.embd)
        self.head_up = nn.Linear(cfg.embd, cfg.codebook_size)
        self.head_down = nn.Linear(cfg.embd, cfg.codebook_size)

    def tokens(self, prev_up, prev_down, music, music_mask=None, style=None):
        """prev codes (B, n), raw music (B, n, rate, F) -> (B, n, E). Unconditioned: an all-zero step of music
        means none; conditioned: the mask (B, n, rate, 2) says which columns are real (default: the rows that are
        not all zero) and the style (B,) (default freestyle) is added to every token."""
        normalized = (music - self.music_mean) / self.music_std
        if not self.conditioned:
            present = (music.abs().sum((-1, -2)) > 0).to(music.dtype)[..., None]
            music_tokens = present * self.music_in(normalized.flatten(-2)) + (1 - present) * self.no_music
            return self.embed_up(prev_up) + self.embed_down(prev_down) + music_tokens
        if music_mask is None:
            music_mask = (music.abs().sum(-1, keepdim=True) > 0).to(music.dtype).expand(*music.shape[:-1], 2)
        if style is None:
            style = torch.full(prev_up.shape[:1], FREESTYLE, dtype=torch.long, device=prev_up.device)
        music_tokens = self.music_in((normalized * music_mask[..., self.mask_columns]).flatten(-2)) \
            + self.mask_in(music_mask.flatten(-2))
        return self.embed_up(prev_up) + self.embed_down(prev_down) + music_tokens + self.style_in(style)[:, None]

    def heads_out(self, x):
        x = self.norm(x)
        return self.head_up(x), self.head_down(x)

    def forward(self, prev_up, prev_down, music, music_mask=None, style=None):
        """Teacher-forced logits (B, n, K) x 2, each step attending to itself and the `context - 1` steps before."""
        steps = prev_up.shape[1]
        position = torch.arange(steps, device=prev_up.device)
        distance = position[:, None] - position[None]
        allowed = (distance >= 0) & (distance < self.cfg.context)
        bias = torch.where(allowed, -self.slopes[:, None, None] * distance, float("-inf"))
        x = self.tokens(prev_up, prev_down, music, music_mask, style)
        for block in self.blocks:
            x = block(x, bias[None])
        return self.heads_out(x)

    def step(self, prev_up, prev_down, music, kv, pos, music_mask=None, style=None):
        """One streaming step; see the module docstring (`gpt_step_module`)."""
        slots = torch.arange(self.cfg.context, device=kv.device)
        distance = torch.remainder(pos - slots, self.cfg.context)  # steps back to what each slot holds
        filled = (pos - distance) >= 0
        bias = torch.where(filled, -self.slopes[:, None] * distance.to(kv.dtype), -1e9)  # (H, L)
        write = (slots == torch.remainder(pos, self.cfg.context)).to(kv.dtype)
        x = self.tokens(prev_up[:, None], prev_down[:, None], music[:, None],
                        None if music_mask is None else music_mask[:, None], style)
        caches = []
        for block, cache in zip(self.blocks, kv, strict=True):
            x, cache = block.step(x, bias[None, :, None, :], cache, write)
            caches.append(cache)
        logits_up, logits_down = self.heads_out(x[:, 0])
        return logits_up, logits_down, torch.stack(caches)


# --- the choreographer ------------------------------------------------------------------------------------------
class Codes(nn.Module):
    """VQ-VAE + GPT + normalizer. Build with `from_config(cfg, stats)`."""

    PRESETS = PRESETS
    CONFIG = CodesConfig  # the config's keys and types (the trainer checks config files against them)
    # The graphs' batch axes (`exporters.onnx_export`; others axis 0): the cache's, and the step number all share.
    BATCH_AXES: dict[str, int | None] = {"kv": 2, "pos": None}

    def __init__(self, cfg, stats):
        super().__init__()
        if cfg.rate & (cfg.rate - 1) or cfg.stage not in ("vq", "gpt"):
            raise OnbeatError("codes config: rate must be a power of 2 and stage vq or gpt, "
                              f"got {cfg.rate}, {cfg.stage!r}")
        self.cfg = cfg
        self.register_buffer("pose_mean", torch.as_tensor(stats["pose_mean"], dtype=torch.float32))
        self.register_buffer("pose_std", torch.as_tensor(stats["pose_std"], dtype=torch.float32))
        self.vq = VQVAE(cfg)
        self.gpt = GPT(cfg, stats["music_mean"], stats["music_std"])

    @classmethod
    def from_config(cls, cfg, stats):
        """cfg: a dict (unknown keys, e.g. the trainer's, are ignored); stats: the dataset's normalizer arrays.
        Stage "gpt" freezes the VQ-VAE, loaded from `vq_checkpoint` when given (a finished model's checkpoint
        holds its VQ-VAE weights itself and names none)."""
        model = cls(config_from(CodesConfig, cfg), stats)
        if model.cfg.stage == "gpt":
            if model.cfg.vq_checkpoint:
                model.vq.load_state_dict(load_model(model.cfg.vq_checkpoint, "codes").vq.state_dict())
            model.vq.requires_grad_(False)
        return model

    def metadata(self):
        cfg = self.cfg
        return {"model": "codes", "version": VERSION, "fps": FEATURE_FPS, "rate": cfg.rate,
                "code_rate": FEATURE_FPS / cfg.rate, "slice_frames": cfg.slice_frames,
                "codebook_size": cfg.codebook_size,
                "start_token": cfg.codebook_size, "layers": cfg.layers, "heads": cfg.heads, "context": cfg.context,
                "head_dim": cfg.head_dim, "decode_context": cfg.decode_context, "slice_codes": cfg.slice_codes,
                "decode_window": cfg.decode_window, "pose_dim": POSE_DIM,
                "feature_dim": FEATURE_DIM, "feature_names": list(FEATURE_NAMES),
                "styles": list(STYLES[:cfg.styles]), "music_mask": list(MASK_GROUPS) if cfg.styles else [],
                "sampling": {key: getattr(cfg, key) for key in sampler.SAMPLING_KEYS},
                "config": asdict(cfg)}

    # --- training -------------------------------------------------------------------------------------------
    def normalize(self, rows):
        return (rows - self.pose_mean) / self.pose_std

    def loss(self, batch):
        """batch: motion (B, W, D) raw rows, music (B, W, F) raw, music_mask (B, W, 2), has_music (B,), style (B,).
        Returns (loss, logs)."""
        return self.vq_loss(batch) if self.cfg.stage == "vq" else self.gpt_loss(batch)

    def vq_loss(self, batch):
        motion = batch["motion"]
        if motion.shape[1] > self.cfg.vq_window:
            start = int(torch.randint(0, motion.shape[1] - self.cfg.vq_window + 1, ()))
            motion = motion[:, start:start + self.cfg.vq_window]
        rows = self.normalize(self._whole_codes(motion))
        rebuilt, commitment, usage = self.vq(rows)
        reconstruction = F.smooth_l1_loss(rebuilt, rows)
        velocity = F.smooth_l1_loss(rebuilt.diff(dim=1), rows.diff(dim=1))
        raw = rebuilt * self.pose_std + self.pose_mean
        consistency = contact_consistency(row_positions(raw), raw[..., CONTACT_SLICE])
        loss = (reconstruction + self.cfg.velocity_weight * velocity + self.cfg.commitment * commitment
                + self.cfg.consistency_weight * consistency)
        return loss, {"rec": reconstruction.item(), "vel": velocity.item(), "commit": commitment.item(),
                      "usage": float(usage), "consistency": consistency.item()}

    def gpt_loss(self, batch):
        cfg = self.cfg
        if not all(codebook.initialized for codebook in self.vq.codebooks.values()):
            raise OnbeatError("codes stage gpt needs a trained VQ-VAE: set vq_checkpoint to a stage vq checkpoint")
        rows = self._whole_codes(batch["motion"])
        with torch.no_grad():  # the VQ-VAE is frozen (encode does no EMA updates)
            codes_up, codes_down = self.vq.encode(self.normalize(rows))
        size, steps = codes_up.shape
        device = codes_up.device
        if self.gpt.conditioned:
            mask = self._whole_codes(batch["music_mask"])
            style = torch.where(torch.rand(size, device=device) < cfg.style_dropout, FREESTYLE, batch["style"])
        else:  # as before the mask existed: music only where the window has its song
            mask = batch["has_music"][:, None, None].expand(-1, rows.shape[1], len(MASK_GROUPS))
            style = None
        kept = (torch.rand(size, device=device) >= cfg.music_dropout)[:, None, None].to(mask.dtype)
        mask = mask * kept
        music = (self._whole_codes(batch["music"]) * mask[..., self.gpt.mask_columns]).view(size, steps, cfg.rate, -1)
        conditioning = {"music_mask": mask.view(size, steps, cfg.rate, -1), "style": style} \
            if self.gpt.conditioned else {}
        start = torch.full((size, 1), cfg.codebook_size, device=device)
        prev_up = torch.cat([start, codes_up[:, :-1]], dim=1)
        prev_down = torch.cat([start, codes_down[:, :-1]], dim=1)
        logits_up, logits_down = self.gpt(prev_up, prev_down, music, **conditioning)
        loss_up = F.cross_entropy(logits_up.flatten(0, 1), codes_up.flatten())
        loss_down = F.cross_entropy(logits_down.flatten(0, 1), codes_down.flatten())
        accuracy = ((logits_up.argmax(-1) == codes_up).float().mean()
                    + (logits_down.argmax(-1) == codes_down).float().mean()) / 2
        return loss_up + loss_down, {"ce_up": loss_up.item(), "ce_down": loss_down.item(), "acc": accuracy.item()}

    def _whole_codes(self, x):
        """Crop (B, T, ...) to a multiple of `rate` frames."""
        return x[:, :x.shape[1] // self.cfg.rate * self.cfg.rate]

    # --- the kind's export contract (see onbeat.choreographers.kinds) ----------------------------------------
    def export_graphs(self):
        """{graph: (module, example inputs, output names)}: the GPT step and the streaming decoder."""
        return {"gpt": (self.gpt_step_module(), self.gpt_step_example_inputs(), ["logits_up", "logits_down", "kv_out"]),
                "decoder": (self.decoder_module(), self.decoder_example_inputs(), ["pose"])}

    def step_callables(self):
        """{graph: numpy callable} taking the graph's own inputs (the runtime fills style and mask in)."""
        return dict(zip(("gpt", "decoder"), self._torch_steps(), strict=True))

    @staticmethod
    def parity_inputs(graph, metadata, rng):
        """Random valid arguments for one call of `graph`, away from the start state (a wrapped-around cache)."""
        m = metadata
        codes = lambda *shape: rng.integers(0, m["codebook_size"], shape).astype(np.int64)  # noqa: E731
        if graph == "gpt":
            kv = 0.5 * rng.standard_normal((m["layers"], 2, 1, m["heads"], m["context"], m["head_dim"]))
            return (codes(1), codes(1), rng.random((1, m["rate"], FEATURE_DIM)).astype(np.float32),
                    kv.astype(np.float32), np.array([2 * m["context"] + 3], np.int64)) \
                + styled_parity_inputs(m, m["rate"], rng)
        return codes(1, m["decode_window"]), codes(1, m["decode_window"])

    # --- generation -------------------------------------------------------------------------------------------
    def gpt_step_module(self):
        return GPTStep(self.gpt)

    def empty_cache(self, batch=1):
        cfg = self.cfg
        return torch.zeros(cfg.layers, 2, batch, cfg.heads, cfg.context, cfg.head_dim)

    def gpt_step_example_inputs(self):
        start = torch.full((1,), self.cfg.codebook_size, dtype=torch.long)
        inputs = {"prev_up": start, "prev_down": start.clone(), "music": torch.zeros(1, self.cfg.rate, FEATURE_DIM),
                  "kv": self.empty_cache(), "pos": torch.zeros(1, dtype=torch.long)}
        if self.gpt.conditioned:
            inputs.update(music_mask=torch.ones(1, self.cfg.rate, len(MASK_GROUPS)),
                          style=torch.zeros(1, dtype=torch.long))
        return inputs

    def decoder_module(self):
        return StreamDecoder(self)

    def decoder_example_inputs(self):
        codes = torch.zeros(1, self.cfg.decode_window, dtype=torch.long)
        return {"codes_up": codes, "codes_down": codes.clone()}

    def sampler_callables(self, style=None):
        """(gpt_step, decode) numpy callables for `codes_sampler`, backed by this torch model (dancing `style`)."""
        gpt_step, decode = self._torch_steps()
        return conditioned(gpt_step, self.metadata(), sampler.MUSIC_INPUT, style), decode

    def _torch_steps(self):
        """(gpt_step, decode) on numpy arrays, taking the graphs' own inputs."""
        step, decoder = self.gpt_step_module().eval(), self.decoder_module().eval()

        def gpt_step(*arrays, **named):
            with torch.no_grad():
                out = step(*(torch.from_numpy(a) for a in arrays), **{k: torch.from_numpy(v) for k, v in named.items()})
            return tuple(o.numpy() for o in out)

        def decode(codes_up, codes_down):
            with torch.no_grad():
                return decoder(torch.from_numpy(codes_up), torch.from_numpy(codes_down)).numpy()

        return gpt_step, decode

    def generate(self, music, seed=0, style=None, **sampling):
        """(T', POSE_DIM) raw rows dancing to (T, FEATURE_DIM) raw music rows (T' = T rounded down to slices)."""
        self.eval()
        gpt_step, decode = self.sampler_callables(style)
        return sampler.generate(gpt_step, decode, self.metadata(), music, seed=seed, **sampling)


class GPTStep(nn.Module):
    """The exported GPT step (plain tensors in and out; see the module docstring)."""

    def __init__(self, gpt):
        super().__init__()
        self.gpt = gpt

    def forward(self, prev_up, prev_down, music, kv, pos, music_mask=None, style=None):
        return self.gpt.step(prev_up, prev_down, music, kv, pos, music_mask, style)


class StreamDecoder(nn.Module):
    """The exported decoder: the raw rows of the last `slice_codes` codes' frames (see the module docstring)."""

    def __init__(self, model):
        super().__init__()
        self.vq, self.frames = model.vq, model.cfg.slice_frames
        self.pose_mean, self.pose_std = model.pose_mean, model.pose_std

    def forward(self, codes_up, codes_down):
        rows = self.vq.decode(codes_up, codes_down)[:, -self.frames:]
        return rows * self.pose_std + self.pose_mean


