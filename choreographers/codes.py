"""The codes runtime: Bailando-style pose codes + GPT (`codes_sampler`) around the exported GPT step and decoder."""
from typing import Any

import numpy as np

from onbeat.choreographers import codes_sampler
from onbeat.choreographers.base import MAX_SLICE_FRAMES, ModelChoreographer
from onbeat.choreographers.conditioning import conditioned
from onbeat.choreographers.onnx import Integer, MetadataSchema, Number, Step, Table
from onbeat.core.motion import Motion

MAX_CACHE_BYTES = 256 << 20  # the GPT's key/value cache, allocated from metadata (the shipped model's: 72 kB)


def _whole_codes(m):
    if m["slice_frames"] % m["rate"]:
        return f"slice_frames {m['slice_frames']} is not a multiple of rate {m['rate']}"


def _start_token_in_codebook(m):
    if m["start_token"] > m["codebook_size"]:
        return f"start_token {m['start_token']} is past the codebook ({m['codebook_size']} codes)"


def _cache_size(m):
    cache = 4 * 2 * m["layers"] * m["heads"] * m["context"] * m["head_dim"]
    if cache > MAX_CACHE_BYTES:
        return (f"layers x heads x context x head_dim ask for a {cache / 2 ** 20:.0f} MiB cache (at most "
                f"{MAX_CACHE_BYTES / 2 ** 20:.0f} MiB)")


# What the runtime reads from an exported file (checked at load, see `onbeat.choreographers.onnx`).
METADATA = MetadataSchema({
    "slice_frames": Integer(1, MAX_SLICE_FRAMES), "rate": Integer(1, MAX_SLICE_FRAMES),
    "layers": Integer(1, 64), "heads": Integer(1, 64), "context": Integer(1, 8192), "head_dim": Integer(1, 1024),
    "codebook_size": Integer(1, 65536), "start_token": Integer(0, 65536), "decode_window": Integer(1, 4096),
    "sampling": Table({"temperature": Number(0.0, 100.0, above_low=True), "top_k": Integer(0, 65536),
                       "repeat_window": Integer(0, 4096), "repeat_penalty": Number(0.0, 100.0),
                       "smoothing": Number(0.0, 0.99)}, optional=("smoothing",)),
}, rules=(_whole_codes, _start_token_in_codebook, _cache_size))


class CodesChoreographer(ModelChoreographer):
    """Every code step costs the same, so there is nothing to degrade. `steps`: {"gpt": ..., "decoder": ...}."""

    def __init__(self, steps: dict[str, Step], metadata: dict[str, Any], seed: int | None = None):
        gpt = conditioned(steps["gpt"], metadata, codes_sampler.MUSIC_INPUT)  # style and mask, if its graph takes them
        self.stream = codes_sampler.CodesStream(gpt, steps["decoder"], metadata, seed)
        super().__init__(self.stream.slice_frames, seed, styled=gpt)

    @property
    def graphs(self) -> list[Step]:
        """The graph callables it runs (a crowd batches them: `onbeat.choreographers.crowd`)."""
        return [self.stream.gpt_step, self.stream.decode]

    def restart(self) -> None:
        self.stream.reset(self.seed)

    def next_rows(self, music: np.ndarray, key_pose: str | None = None) -> np.ndarray:  # no key-pose input
        return self.stream.next_slice(music[:self.slice_frames])

    @staticmethod
    def next_slices(dancers: list["CodesChoreographer"], music: np.ndarray, energies: list[float],
                    key_pose: str | None = None) -> list[Motion]:
        """`next_slice` of several dancers of one model (each its own codes, cache, seed, style and energy) with one
        batched call per GPT step and one decoder call (`codes_sampler.next_slices`)."""
        music = np.asarray(music, np.float32)[:dancers[0].slice_frames]
        rows = codes_sampler.next_slices([dancer.stream for dancer in dancers], music)
        return [dancer.motion_from(r, energy) for dancer, r, energy in zip(dancers, rows, energies, strict=True)]
