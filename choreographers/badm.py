"""The BADM runtime: sliced lockstep diffusion (`badm_sampler`) around the exported denoiser step."""
from typing import Any

import numpy as np

from onbeat.choreographers import badm_sampler
from onbeat.choreographers.base import MAX_SLICE_FRAMES, ModelChoreographer, key_pose_row
from onbeat.choreographers.conditioning import conditioned, for_batch
from onbeat.choreographers.groove import downbeat_frame
from onbeat.choreographers.keyposes import KEY_POSES
from onbeat.choreographers.onnx import Integer, MetadataSchema, Number, Numbers, Step
from onbeat.core.motion import Motion
from onbeat.core.representation import POSE_DIM

# What the runtime reads from an exported file (checked at load, see `onbeat.choreographers.onnx`).
METADATA = MetadataSchema({
    "slice_frames": Integer(2, MAX_SLICE_FRAMES),  # slices join on their last two frames
    "ddim_steps": Integer(1, 200),  # each step is a network call; the live engine runs them every slice
    "pose_mean": Numbers(POSE_DIM, Number(-1e6, 1e6)),
    "pose_std": Numbers(POSE_DIM, Number(0.0, 1e6, above_low=True)),
})


class BadmChoreographer(ModelChoreographer):
    """Degrades by taking fewer DDIM steps. `steps`: {"step": the denoiser}."""

    def __init__(self, steps: dict[str, Step], metadata: dict[str, Any], seed: int | None = None):
        self.denoise = conditioned(steps["step"], metadata, badm_sampler.MUSIC_INPUT)  # style and mask, if taken
        self.full_steps = self.steps = int(metadata["ddim_steps"])
        self.pose_mean = np.asarray(metadata["pose_mean"], np.float32)
        self.pose_std = np.asarray(metadata["pose_std"], np.float32)
        super().__init__(int(metadata["slice_frames"]), seed, styled=self.denoise)

    @property
    def graphs(self) -> list[Step]:
        """The graph callables it runs (a crowd batches them: `onbeat.choreographers.crowd`)."""
        return [self.denoise]

    def restart(self) -> None:
        self.state = badm_sampler.StreamState.start(self.slice_frames, len(self.pose_mean), self.seed)

    def set_quality(self, level: float) -> None:
        self.steps = max(1, round(self.full_steps * level))

    def next_rows(self, music: np.ndarray, key_pose: str | None = None) -> np.ndarray:
        music = self._two_slices(music)
        key, mask = self._key_inputs(key_pose, music[:self.slice_frames])
        clean = badm_sampler.sample_slice(self.denoise, self.state, music, self.steps, key, mask)
        return clean * self.pose_std + self.pose_mean

    @staticmethod
    def next_slices(dancers: list["BadmChoreographer"], music: np.ndarray, energies: list[float],
                    key_pose: str | None = None) -> list[Motion]:
        """`next_slice` of several dancers of one model (the same music, each its own state, seed, style and
        energy) with one batched graph call per denoising step: the graph's dynamic batch dimension."""
        lead = dancers[0]
        music = lead._two_slices(np.asarray(music, np.float32))
        keys, masks = zip(*(dancer._key_inputs(key_pose, music[:lead.slice_frames]) for dancer in dancers),
                          strict=True)
        denoise = for_batch([dancer.denoise for dancer in dancers])  # each dancer its own style
        clean = badm_sampler.sample_slices(denoise, [dancer.state for dancer in dancers],
                                           np.repeat(music[None], len(dancers), 0), lead.steps, list(keys), list(masks))
        return [dancer.motion_from(rows * dancer.pose_std + dancer.pose_mean, energy)
                for dancer, rows, energy in zip(dancers, clean, energies, strict=True)]

    def _two_slices(self, music):
        """The slice's music and the next slice's: the sampler looks one slice ahead; without given lookahead rows
        the last row is held."""
        frames = self.slice_frames
        lookahead = music[frames:2 * frames]
        return np.concatenate([music[:frames], lookahead, np.repeat(music[-1:], frames - len(lookahead), 0)])

    def _key_inputs(self, name, music):
        """(key_pose (S, D) normalized, key_mask (S,)) asking for the named pose on the slice's downbeat."""
        if name not in KEY_POSES:
            return None, None
        previous = self.state.context[-1] * self.pose_std + self.pose_mean  # the pose the dance is in now
        frame = downbeat_frame(music)
        key = np.zeros_like(self.state.context)
        key[frame] = (key_pose_row(name, previous) - self.pose_mean) / self.pose_std
        mask = np.zeros(len(key), np.float32)
        mask[frame] = 1.0
        return key, mask
