"""The style and music-mask inputs of exported graphs that have them (models trained on a styled dataset).

Such a graph takes, after the inputs the samplers pass, `music_mask` (B, rows, 2) float32 ([audio, beat] per
music row, `onbeat.core.music`) and `style` (B,) int64 (an id of `onbeat.core.styles`; the model's metadata
"styles" lists the names of the ids it knows). `conditioned(step, metadata, music_input, style)` wraps the graph's
callable so the samplers need not know: it passes the mask of the music rows it is given (live rows are real audio
and beats, all-zero rows are no music: `presence_mask`) and the chosen style, settable while dancing (`.style`: at
once; `.switch(style)`: blended, see below). A graph without these inputs (metadata "styles" empty or absent) is
returned as it is.

A blended switch (`switch`) runs the graph for both styles while the blend lasts (`STYLE_BLEND_SECONDS`, advanced
by `advance(seconds)` once per slice) and mixes its outputs, the new style's share rising linearly from 0 to 1, so
the dance eases from one style into the other instead of changing on one slice; it costs a second graph call per
call meanwhile (the engine lowers the quality if that makes a slice late).
"""
import copy

import numpy as np

from onbeat.core.errors import OnbeatError
from onbeat.core.music import MASK_GROUPS, presence_mask
from onbeat.core.styles import FREESTYLE, STYLES, known_style

STYLE_BLEND_SECONDS = 1.0  # how long a blended style switch takes (about two beats)


class Conditioned:
    """A graph callable with the music mask and the style id appended (by name) to every call."""

    def __init__(self, step, styles, music_input, style=None):
        self.step, self.styles, self.music_input = step, list(styles), music_input
        self.style = style
        self.blend = 1.0  # share of the new style in the outputs: below 1 while a `switch` blends in

    @property
    def blending(self) -> bool:
        return self.blend < 1.0 and self._previous_id != self.style_id

    @property
    def style(self):
        return self.styles[self.style_id]

    @style.setter
    def style(self, style):
        """A name of the model's styles (any spelling `style_name` knows), an id, or None for freestyle."""
        self.style_id: int | np.ndarray = self._id_of(style)  # an array of ids in a batch (`for_batch`)
        self._previous_id = self.style_id

    def switch(self, style) -> None:
        """Change to `style` (as the `style` setter takes it) blended over `STYLE_BLEND_SECONDS`; OnbeatError (the
        style left as it was) when the model does not know it. A switch during a blend starts from the style being
        blended in."""
        new = self._id_of(style)
        if new != self.style_id:
            self._previous_id, self.style_id, self.blend = self.style_id, new, 0.0

    def advance(self, seconds: float) -> None:
        """`seconds` more of dance made: the blend moves on."""
        self.blend = min(1.0, self.blend + seconds / STYLE_BLEND_SECONDS)

    def _id_of(self, style):
        if isinstance(style, (int, np.integer)):
            known = int(style) if 0 <= style < len(self.styles) else None
        else:
            name = STYLES[FREESTYLE] if style is None else known_style(style)
            known = self.styles.index(name) if name in self.styles else None
        if known is None:
            raise OnbeatError(f"unknown style {style!r}: this model knows {', '.join(self.styles)}")
        return known

    def __getattr__(self, name):  # the wrapped graph's own attributes (metadata, path, ...)
        if name == "step":
            raise AttributeError(name)
        return getattr(self.step, name)

    def __call__(self, *arrays):
        music = np.asarray(arrays[self.music_input])
        mask = presence_mask(music)
        outputs = self.step(*arrays, music_mask=mask, style=np.full(len(music), self.style_id, np.int64))
        if not self.blending:
            return outputs
        previous = self.step(*arrays, music_mask=mask, style=np.full(len(music), self._previous_id, np.int64))
        mix = lambda new, old: (self.blend * np.asarray(new) + (1 - self.blend) * np.asarray(old)).astype(  # noqa: E731
            np.asarray(new).dtype)
        if isinstance(outputs, (tuple, list)):
            return type(outputs)(mix(new, old) for new, old in zip(outputs, previous, strict=True))
        return mix(outputs, previous)


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
    batched.blend = 1.0  # a crowd switches style at once: the outputs keep their batch on different axes
    return batched
