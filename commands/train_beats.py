"""`onbeat train-beats`: train the ear's beat activation networks on annotated clips (gtzan-dev by default): the set
shipped (`all`, every clip) and one set per cross-validation fold (its clips left out), written to one weights file.
More music can be added to every set: annotated clips (`--extra`) and dance songs labelled offline from their
style's tempo (`--styled`, `onbeat.models.beat_labels`) and songs synthesized with exact beats (`--synth`,
`onbeat.models.synth_songs`)."""
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from onbeat.core.errors import OnbeatError
from onbeat.core.paths import data_root
from onbeat.core.styles import known_style
from onbeat.ear.activation import ASSET, SHIPPED
from onbeat.evaluation.beats import FOLDS, find_clips, fold_of, load_beats, load_clip, load_set, record
from onbeat.models.beat_activation import MEMBERS, SYNTH_SHARE, TRAIN, train_network
from onbeat.models.beat_labels import STYLE_BPM, frames_of, style_beats
from onbeat.models.synth_songs import render, soundfont


def add_arguments(parser):
    parser.add_argument("--data", type=Path, help="folder of audio + <name>.beats annotations, or the shared data "
                        "folder (its gtzan-dev/; the default)")
    parser.add_argument("--out", type=Path, default=ASSET, help="weights file to write")
    parser.add_argument("--steps", type=int, default=TRAIN["steps"], help="optimisation steps per network")
    parser.add_argument("--members", type=int, default=MEMBERS, help="networks per set (seeds 0, 1, ...)")
    parser.add_argument("--extra", type=Path, action="append", default=[], help="another folder of annotated clips "
                        "(e.g. synthesized songs) added to every set's training, never held out; repeatable")
    parser.add_argument("--styled", type=Path, action="append", default=[], help="a folder in the ballroom layout "
                        "(motion.json with each song's dance style, audio/): its songs, beats labelled offline within "
                        "their style's tempo range, added to every set's training; repeatable")
    parser.add_argument("--synth", type=int, default=0, metavar="SONGS", help="this many songs synthesized with "
                        "exact beats (seeds 0, 1, ...; needs fluidsynth), drawn "
                        f"{round(100 * SYNTH_SHARE)}%% of the time in every set (the shipped networks heard none: "
                        "the README says why)")


def run(args):
    data_dir = args.data or data_root()
    if data_dir is None:
        raise OnbeatError("no data folder: pass --data or set ONBEAT_DATA")
    if args.steps < 1 or args.members < 1 or args.synth < 0:
        raise OnbeatError("--steps and --members must be at least 1, --synth at least 0")
    sound_font = soundfont() if args.synth else None   # (before the long part: says what to install)
    torch.set_num_threads(1)
    _, clips = load_set(data_dir)
    names = [clip.name for clip in clips]
    log_mels, beat_frames = map(list, zip(*(heard(clip.audio, clip.beats) for clip in clips), strict=True))
    extra_mels, extra_beats = [], []
    for folder in args.extra:
        for mels, frames in annotated(folder):
            extra_mels.append(mels)
            extra_beats.append(frames)
    for folder in args.styled:
        for _, mels, frames in styled_songs(folder):
            extra_mels.append(mels)
            extra_beats.append(frames)
    synth = synthesized(args.synth, sound_font) if args.synth else []
    synth_mels, synth_beats = [mels for mels, _ in synth], [frames for _, frames in synth]
    folds = fold_of(clips)
    sets = {SHIPPED: np.ones(len(clips), dtype=bool), **{f"fold{k}": folds != k for k in range(FOLDS)}}
    arrays: dict[str, Any] = {}   # (typed loosely: savez_compressed takes its arrays as keywords)
    config = {**TRAIN, "steps": args.steps}
    for name, chosen in sets.items():
        picked = np.flatnonzero(chosen)
        arrays[f"clips/{name}"] = np.array([names[i] for i in picked])
        # the set's clips drawn as often as the extra ones, the real songs together as often as SYNTH_SHARE says
        repeat = max(1, round((len(extra_mels) + len(synth_mels)) / len(picked)))
        real_mels = [log_mels[i] for i in picked] * repeat + extra_mels
        real_beats = [beat_frames[i] for i in picked] * repeat + extra_beats
        if synth_mels:
            again = max(1, round(len(synth_mels) * (1 - SYNTH_SHARE) / SYNTH_SHARE / len(real_mels)))
            real_mels, real_beats = real_mels * again, real_beats * again
        for member in range(args.members):
            print(f"set {name}, network {member + 1} of {args.members}: {len(picked)} clips", flush=True)
            weights = train_network(real_mels + synth_mels, real_beats + synth_beats, seed=member, config=config,
                                    log=lambda line: print("  " + line, flush=True))
            arrays.update({f"{name}/{member}/{key}": value for key, value in weights.items()})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out}")
    return 0


def heard(audio, beats):
    """(log-mel frames as the onset envelope computes them live, beat frames) of a clip and its beat times."""
    return record(audio, activation=None)[0].log_mels(), frames_of(beats)


def annotated(folder):
    """[(log-mel frames, beat frames)] of a folder's annotated clips (read one at a time: they may be many)."""
    return [heard(load_clip(audio), load_beats(beats)[0]) for audio, beats in find_clips(folder)[1]]


def synthesized(songs, sound_font):
    """[(log-mel frames, beat frames)] of synthesized songs 0 .. `songs` - 1, rendered with `sound_font` in a
    temporary folder."""
    with tempfile.TemporaryDirectory(prefix="onbeat-synth-") as folder:
        for seed in range(songs):
            render(seed, folder, sound_font=sound_font)
            if (seed + 1) % 50 == 0 or seed + 1 == songs:
                print(f"synthesized {seed + 1} of {songs} songs", flush=True)
        return annotated(folder)


def styled_songs(folder):
    """[(name, log-mel frames, beat frames)] of a ballroom-layout folder's songs in a style of `STYLE_BPM`, their
    beats labelled by `style_beats`; a song it cannot label is left out, and said so."""
    try:
        info = json.loads((folder / "motion.json").read_text())
    except (OSError, ValueError) as e:
        raise OnbeatError(f"{folder}: not a folder in the ballroom layout (motion.json, audio/): {e}") from None
    songs = []
    for name, meta in sorted(info.items()):
        style, audio = known_style(meta.get("style")), folder / "audio" / f"{name}.ogg"
        if style not in STYLE_BPM or meta.get("suspect") or not audio.is_file():
            continue
        replay, _ = record(load_clip(audio), activation=None)
        frames = style_beats(replay.novelties(), style)
        if frames is None:
            print(f"{name}: left out (its own tempo is not in the {style} range, nor an octave of it)")
            continue
        songs.append((name, replay.log_mels(), frames))
    if not songs:
        raise OnbeatError(f"{folder}: no song with a recording in a style of {', '.join(STYLE_BPM)}")
    print(f"{folder}: {len(songs)} songs labelled from their dance style's tempo", flush=True)
    return songs

