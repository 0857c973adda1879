"""The dance-style vocabulary: one fixed list for every data set, model, exporter and runtime.

A style's id is its position in `STYLES`. The list only ever grows at the end, so an id never changes meaning: a
model trained when the list had N names knows ids 0..N-1 (its metadata lists them by name), and a newer onbeat
still reads its ids right. Id 0, "freestyle", is every dance whose style is unknown or not in the list, and what a
model is asked for when no style is chosen (training drops the style to it now and then, so it means "any").

| id | style | where the data comes from |
|---|---|---|
| 0 | freestyle | DanceDB (olivia, vaso, elena: the files name no style), Bandai-Namco ("dance-short"), unknown labels |
| 1-4 | waltz, tango, rumba, cha-cha | ballroom ("Dance with Melody") |
| 5-8 | krump, hip-hop, locking, popping | Motorica dance (KTH street dance) |
| 9 | j-pop | Perfume |
| 10-13 | jazz, charleston, tap, casual | Motorica's other genres (not in the shared samples) |
"""
import re

STYLES = ("freestyle", "waltz", "tango", "rumba", "cha-cha", "krump", "hip-hop", "locking", "popping", "j-pop",
          "jazz", "charleston", "tap", "casual")
FREESTYLE = 0
STYLE_INDEX = {name: i for i, name in enumerate(STYLES)}
# Spellings the data sets use, as `_key` reduces them: ballroom's "chacha", Motorica's "hiphop", ...
_ALIASES = {"chacha": "cha-cha", "hiphop": "hip-hop", "jpop": "j-pop", "unknown": "freestyle", "": "freestyle"}


def _key(name):
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


_BY_KEY = {**{_key(s): s for s in STYLES}, **_ALIASES}


def known_style(label: object) -> str | None:
    """The vocabulary's name for a style label in any spelling ("chacha" -> "cha-cha"), or None when unknown."""
    return _BY_KEY.get(_key(label))


def style_name(label: object) -> str:
    """The vocabulary's name for a data set's style label; "freestyle" when unknown."""
    return known_style(label) or STYLES[FREESTYLE]


def style_id(label: object) -> int:
    """The id of a style label (any spelling `style_name` knows); FREESTYLE when unknown."""
    return STYLE_INDEX[style_name(label)]
