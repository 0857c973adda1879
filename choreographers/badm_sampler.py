"""Few-step sampling of the BADM-style choreographer, in numpy: the one loop both torch generation and the ONNX
runtime use (they differ only in the `denoise` callable they pass).

The dance is a stream of slices of S frames. Slice k and slice k+1 are denoised *in lockstep* by one network call
per step (bidirectional, as in BADM): a lockstep position u runs from 1 to 0; slice k's noise level goes from MID
to 0 while slice k+1's goes from 1 to MID. When slice k comes out clean, slice k+1 is half-denoised; it is carried
in `StreamState` and becomes the current slice of the next call, and a fresh noise slice becomes the next one.
So each slice costs `steps` network calls, and every slice was already "seen" one call ahead.

    denoise(noisy (B,S,D), t (B,), context (B,S,D), next_noisy (B,S,D), music (B,2S,F), key_pose (B,S,D),
            key_mask (B,S)) -> (x0 (B,S,D), next_x0 (B,S,D))

B is 1 for one dancer, the crowd's size for a crowd (`sample_slices`; exported graphs have a dynamic batch).

Poses are normalized rows ((row - pose_mean) / pose_std); music is the raw feature rows of slices k and k+1
(all zeros = no music); t is the lockstep position u in [0, 1]. Graphs of styled models take the music mask and
the style id too; `onbeat.choreographers.conditioning` adds them to `denoise`, so this loop is the same for all.
"""
import functools
from dataclasses import dataclass

import numpy as np

from onbeat.core.representation import CONTACT_SLICE

MUSIC_INPUT = 4  # position of `music` among denoise's inputs
MID = 0.5  # noise level where slice k+1 is handed over to become slice k
COSINE_OFFSET = 0.008  # Nichol & Dhariwal's cosine schedule


def alpha_bar(level):
    """Signal fraction of the cosine schedule at noise level in [0, 1] (0 = clean, 1 = pure noise)."""
    level = np.asarray(level, dtype=np.float64)
    value = np.cos((level + COSINE_OFFSET) / (1 + COSINE_OFFSET) * np.pi / 2) ** 2
    return np.clip(value / np.cos(COSINE_OFFSET / (1 + COSINE_OFFSET) * np.pi / 2) ** 2, 1e-5, 1.0)


def lockstep_levels(u):
    """(level of slice k, level of slice k+1) at lockstep position u in [0, 1]."""
    u = np.asarray(u, dtype=np.float64)
    return u * MID, MID + u * (1 - MID)


@functools.cache
def lockstep_schedule(steps):
    """The `steps + 1` lockstep positions u from 1 to 0 and, at each, (alpha_bar of slice k, of slice k+1): the
    same for every slice, so computed once per step count instead of twice per step."""
    positions = tuple(np.linspace(1.0, 0.0, steps + 1).tolist())
    return positions, tuple(tuple(alpha_bar(level) for level in lockstep_levels(u)) for u in positions)


def ddim_move(noisy, x0, alpha_from, alpha_to):
    """Deterministic DDIM step (eta = 0) from one signal fraction to another, given the predicted clean x0."""
    eps = (noisy - np.sqrt(alpha_from) * x0) / np.sqrt(1 - alpha_from)
    return np.sqrt(alpha_to) * x0 + np.sqrt(1 - alpha_to) * eps


@dataclass
class StreamState:
    """What the stream carries between slices: the last clean slice and the half-denoised next one."""
    context: np.ndarray  # (S, D) normalized clean slice k-1
    next_noisy: np.ndarray  # (S, D) slice k at noise level MID
    rng: np.random.Generator

    @classmethod
    def start(cls, slice_frames, pose_dim, seed=None):
        """A fresh stream: the context is the mean pose (zeros, which training shows the model as a stream start)
        and the first slice is noise at level MID around it."""
        rng = np.random.default_rng(seed)
        noise = rng.standard_normal((slice_frames, pose_dim)).astype(np.float32)
        alpha = alpha_bar(MID)
        return cls(np.zeros((slice_frames, pose_dim), np.float32), (np.sqrt(1 - alpha) * noise).astype(np.float32), rng)


def sample_slice(denoise, state, music, steps=4, key_pose=None, key_mask=None):
    """The next clean (S, D) normalized slice; advances `state`. music: (2S, F) raw rows of slices k and k+1.
    key_pose (S, D) normalized with key_mask (S,) of 0/1 asks for that pose at those frames."""
    return sample_slices(denoise, [state], np.asarray(music)[None], steps, [key_pose], [key_mask])[0]


def sample_slices(denoise, states, music, steps=4, key_poses=None, key_masks=None):
    """`sample_slice` for several streams at once, one batched `denoise` call per step (a crowd of dancers):
    (B, S, D) clean slices; advances each of the B `states`. music: (B, 2S, F); key_poses/key_masks: B of
    `sample_slice`'s (None: no key pose)."""
    count = len(states)
    frames, dim = states[0].context.shape
    key_poses, key_masks = key_poses or [None] * count, key_masks or [None] * count
    key_pose = np.stack([np.zeros((frames, dim), np.float32) if k is None else np.asarray(k, np.float32)
                         for k in key_poses])
    key_mask = np.stack([np.zeros(frames, np.float32) if m is None else np.asarray(m, np.float32) for m in key_masks])
    context = np.stack([state.context for state in states])
    current = np.stack([state.next_noisy for state in states])
    following = np.stack([state.rng.standard_normal((frames, dim)).astype(np.float32) for state in states])
    music = np.asarray(music, np.float32)
    positions, alphas = lockstep_schedule(steps)
    for u, (alpha, next_alpha), (alpha_after, next_alpha_after) in zip(positions[:-1], alphas[:-1], alphas[1:],
                                                                      strict=True):
        x0, next_x0 = denoise(current, np.full(count, u, np.float32), context, following, music, key_pose, key_mask)
        current = ddim_move(current, x0, alpha, alpha_after).astype(np.float32)
        following = ddim_move(following, next_x0, next_alpha, next_alpha_after).astype(np.float32)
    clean = np.stack([smooth_join(state.context, x0[b].astype(np.float32)) for b, state in enumerate(states)])
    for state, slice_clean, slice_following in zip(states, clean, following, strict=True):
        state.context, state.next_noisy = slice_clean, slice_following
    return clean


def smooth_join(context, clean):
    """Inertialization: the new slice's first frame is pulled onto the constant-velocity continuation of the
    context, and the correction fades out over the slice (a raised cosine), so slices join without a visible jump
    even where the half-denoised carried slice disagreed with how the previous slice finally came out. Contact
    columns are labels, not trajectories: they are left alone."""
    frames = len(clean)
    offset = 2 * context[-1] - context[-2] - clean[0]
    offset[CONTACT_SLICE] = 0
    fade = 0.5 * (1 + np.cos(np.pi * np.arange(frames) / frames))
    return (clean + fade[:, None] * offset).astype(np.float32)


def generate(denoise, music, seed, slice_frames, pose_mean, pose_std, steps=4):
    """A whole dance: (T, POSE_DIM) raw rows for (T, F) raw music rows, slice after slice."""
    music = np.asarray(music, np.float32)
    total = len(music)
    count = -(-total // slice_frames)
    # The last slices look one slice ahead: hold the final music row.
    padded = np.concatenate([music, np.repeat(music[-1:], (count + 1) * slice_frames - total, axis=0)])
    state = StreamState.start(slice_frames, len(pose_mean), seed)
    slices = [sample_slice(denoise, state, padded[k * slice_frames:(k + 2) * slice_frames], steps)
              for k in range(count)]
    rows = np.concatenate(slices)[:total]
    return rows * pose_std + pose_mean
