"""The style and music-mask inputs of exported graphs that have them (models trained on a styled dataset).

Such a graph takes, after the inputs the samplers pass, `music_mask` (B, rows, 2) float32 ([audio, beat] per
music row, `onbeat.core.music`) and `style` (B,) int64 (an id of `onbeat.core.styles`; the model's metadata
"styles" lists the names of the ids it knows). `conditioned(step, metadata, music_input, style)` wraps the graph's
callable so the samplers need not know: it passes the mask of the music rows it is given (live rows are real audio
and beats, all-zero rows are no music: `presence_mask`) and the chosen style, settable while dancing (`.style`).
A graph without these inputs (metadata "styles" empty or absent) is returned as it is.
"""
import copy

import numpy as np

from onbeat.core.errors import OnbeatError
from onbeat.core.music import MASK_GROUPS, presence_mask
from onbeat.core.styles import FREESTYLE, STYLES, known_style


class Conditioned:
    """A graph callable with the music mask and the style id appended (by name) to every call."""

    def __init__(self, step, styles, music_input, style=None):
        self.step, self.styles, self.music_input = step, list(styles), music_input
        self.style = style

    @property
    def style(self):
        return self.styles[self.style_id]

    @style.setter
    def style(self, style):
        """A name of the model's styles (any spelling `style_name` knows), an id, or None for freestyle."""
        if isinstance(style, (int, np.integer)):
            known = int(style) if 0 <= style < len(self.styles) else None
        else:
            name = STYLES[FREESTYLE] if style is None else known_style(style)
            known = self.styles.index(name) if name in self.styles else None
        if known is None:
            raise OnbeatError(f"unknown style {style!r}: this model knows {', '.join(self.styles)}")
        self.style_id: int | np.ndarray = known  # an array of ids in a batch (`batched`)

    def __getattr__(self, name):  # the wrapped graph's own attributes (metadata, path, ...)
        if name == "step":
            raise AttributeError(name)
        return getattr(self.step, name)

    def __call__(self, *arrays):
        music = np.asarray(arrays[self.music_input])
        return self.step(*arrays, music_mask=presence_mask(music),
                         style=np.full(len(music), self.style_id, np.int64))


MAX_STYLES = 4096


def conditioned(step, metadata, music_input, style=None):
    """`step` with the style and mask inputs its graph takes (see the module docstring), or `step` itself.
    OnbeatError (one line, naming the file) when the metadata's styles or mask groups are not ones this onbeat
    reads."""
    styles = metadata.get("styles") or []
    if not styles:
        return step
    where = getattr(step, "path", "model")
    if not isinstance(styles, list) or len(styles) > MAX_STYLES or not all(isinstance(s, str) for s in styles):
        raise OnbeatError(f"{where}: metadata styles must be a list of at most {MAX_STYLES} style names")
    if metadata.get("music_mask") != list(MASK_GROUPS):
        raise OnbeatError(f"{where}: metadata music_mask {metadata.get('music_mask')!r} is not this onbeat's "
                          f"{list(MASK_GROUPS)!r}; re-export it with `onbeat export`")
    return Conditioned(step, styles, music_input, style)


def for_batch(steps):
    """One callable for a batched call of several dancers' `steps` (the same graph, each maybe `Conditioned` with
    its own style): the first, with every dancer's style id where they take one (`onbeat.choreographers.crowd`)."""
    lead = steps[0]
    if not isinstance(lead, Conditioned):
        return lead
    batched = copy.copy(lead)
    batched.style_id = np.array([step.style_id for step in steps], np.int64)
    return batched
