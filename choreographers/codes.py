"""The codes runtime: Bailando-style pose codes + GPT (`codes_sampler`) around the exported GPT step and decoder."""
from typing import Any

import numpy as np

from onbeat.choreographers import codes_sampler
from onbeat.choreographers.base import ModelChoreographer
from onbeat.choreographers.onnx import Step


class CodesChoreographer(ModelChoreographer):
    """Every code step costs the same, so there is nothing to degrade. `steps`: {"gpt": ..., "decoder": ...}."""

    def __init__(self, steps: dict[str, Step], metadata: dict[str, Any], seed: int | None = None):
        self.stream = codes_sampler.CodesStream(steps["gpt"], steps["decoder"], metadata, seed)
        super().__init__(self.stream.slice_frames, seed)

    def restart(self) -> None:
        self.stream.reset(self.seed)

    def next_rows(self, music: np.ndarray, key_pose: str | None = None) -> np.ndarray:  # no key-pose input
        return self.stream.next_slice(music[:self.slice_frames])
