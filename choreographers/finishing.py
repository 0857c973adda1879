"""The finish every slice gets before it is shown, whichever choreographer made it.

The engine runs each slice through one `Finishing` (`stream.engine`), so every choreographer — the shipped
models, the groove, an export of a kind registered later — lands key poses and keeps its feet on the floor
without doing anything itself:
1. a requested key pose lands on its downbeat (`keyposes.KeyPoseLanding`), then
2. the feet are grounded (`feet.FootGrounding`: contacts, foot locking with leg IK, the floor), the legs yielding
   to the key pose while it shows.
Its state (pins, scheduled poses) follows the output timeline, so it belongs to the engine, not to a
choreographer: a switch of choreographer is a jump, which lets go of the pins, and a scheduled key pose survives it.
"""
from onbeat.choreographers.feet import FootGrounding
from onbeat.choreographers.keyposes import KEY_POSES, KeyPoseLanding
from onbeat.core.motion import Motion
from onbeat.core.music import FEATURE_FPS


class Finishing:
    def __init__(self, fps: float = FEATURE_FPS):
        self.landing = KeyPoseLanding(fps)
        self.feet = FootGrounding(fps)

    def strike(self, name: str, hit_time: float) -> list[tuple[float, str]] | None:
        """Schedule the named key pose to be shown exactly at output time `hit_time` (at least
        `landing.lead_seconds` after the start of the next slice); returns the (hit time, name) of the poses it
        replaces (`KeyPoseLanding.schedule`), or None for an unknown name."""
        return self.landing.schedule(name, hit_time) if name in KEY_POSES else None

    def __call__(self, motion: Motion, start: float, continues: bool = True) -> Motion:
        """The slice starting at output time `start`, finished. `continues`: False after a jump (the slice does not
        continue the previous one), which lets go of the feet's pins."""
        if not continues:
            self.feet.reset()
        motion, key_weight = self.landing.apply(motion, start)
        return self.feet.apply(motion, key_weight)
