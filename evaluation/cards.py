"""`onbeat eval dance --cards DIR`: the metrics and speed sections of the model cards, written by the evaluator.

A card `<kind>_<name>.md` (e.g. `badm_small.md`) belongs to the evaluated export of the same name (live path:
`runs/badm_v2.onnx` for `badm_v2.md`), else to the evaluated row of that model kind (live path: `default` is
the kind `DEFAULT` names; torch path: the checkpoint's kind). Its generated part sits between two markers and is
replaced on every run; the first run replaces the hand-written "## Metrics" and "## Speed" sections.
"""
import re
from pathlib import Path

from onbeat.choreographers.library import DEFAULT
from onbeat.core.errors import OnbeatError
from onbeat.evaluation.dance import METRICS

BEGIN, END = "<!-- onbeat eval dance: generated, do not edit -->", "<!-- end of generated part -->"
LIVE_KINDS = {"default": DEFAULT, "badm": "badm", "codes": "codes"}


def row_kind(row, spec, path):
    if path == "live":
        return LIVE_KINDS.get(spec) or (Path(spec).stem.split(".")[0] if str(spec).endswith(".onnx") else None)
    return spec.split("=")[0]


def markdown_table(evaluation, highlight):
    rows = list(evaluation.rows)
    header = "| metric | " + " | ".join(f"**{r}**" if r == highlight else r for r in rows) + " |"
    lines = [header, "|---" * (len(rows) + 1) + "|"]
    for key, (label, unit, digits, _) in METRICS.items():
        if not any(key in evaluation.rows[r] for r in rows):
            continue
        cells = []
        for r in rows:
            value = evaluation.rows[r].get(key)
            cells.append("-" if value is None or value[0] != value[0] else
                         f"{value[0]:.{digits}f} [{value[1]:.{digits}f}, {value[2]:.{digits}f}]")
        lines.append(f"| {label}{f' ({unit})' if unit else ''} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def card_section(evaluation, row, command):
    meta = evaluation.meta
    values = evaluation.rows[row]
    load = ", ".join(f"{x:.1f}" for x in meta["load_average"])
    return "\n".join([
        BEGIN,
        "## Metrics",
        (f"`{command}`: {len(meta['songs'])} songs ({', '.join(sorted(set(meta['styles'])))}), "
         f"{meta['seconds']:g} s each (or the song's end), seeds {', '.join(map(str, meta['seeds']))}, "
         f"{meta['path']} path; kinetic features: {meta['kinetic']}; beats: {meta['beats']}; intervals: "
         f"{meta['intervals']}. Test set: {meta.get('test_set', '-')}. The real row is the real dancers (FID: the "
         "real-vs-real floor of equal size)."),
        "",
        markdown_table(evaluation, row),
        "",
        "## Speed",
        (f"Live path (file, ear, engine, model, forward kinematics; one process, one thread): "
         f"{values['rtf'][0]:.1f}x real time [{values['rtf'][1]:.1f}, {values['rtf'][2]:.1f}], the choreographer "
         f"alone {values['rtf_model'][0]:.1f}x, on this machine with load average {load} while it ran.")
        if "rtf" in values else "No timing (not a generated row).",
        END,
    ])


def write_cards(evaluation, folder, command):
    """Rewrite the generated part of each card in `folder` that matches an evaluated row; returns the cards written."""
    folder = Path(folder)
    if not folder.is_dir():
        raise OnbeatError(f"--cards {folder}: no such folder")
    written = []
    models, path = evaluation.meta["models"], evaluation.meta["path"]
    for card in sorted(folder.glob("*.md")):
        kind = card.stem.split("_")[0]
        rows = ([row for row, spec in models.items() if row_kind(row, spec, path) == card.stem]
                or [row for row, spec in models.items() if row_kind(row, spec, path) == kind])
        if not rows:
            continue
        text = card.read_text()
        section = card_section(evaluation, rows[0], command)
        if BEGIN in text and END in text:
            text = text[:text.index(BEGIN)] + section + text[text.index(END) + len(END):]
        else:
            match = re.search(r"^## Metrics\b.*?(?=^Code:|\Z)", text, flags=re.DOTALL | re.MULTILINE)
            if match is None:
                text = text.rstrip("\n") + "\n\n" + section + "\n"
            else:
                text = text[:match.start()] + section + "\n\n" + text[match.end():]
        card.write_text(text)
        written.append(card)
    return written
