"""`onbeat bench feet`: what the finishing every slice gets (`choreographers.finishing`: key-pose landing, foot
contacts, foot locking with leg IK, the floor) costs per 30 fps frame.

Each choreographer first dances `seconds` of the synthetic music slice by slice (not timed); then its slices go
through a fresh `Finishing` in order, a key pose struck every two seconds, and each call is timed, on the wall
clock and in CPU time of the calling thread (on a shared, busy machine the wall clock also counts the time other
processes had the core; CPU time is what the finishing itself costs). Numbers are ms per 30 fps frame (a slice's
time over its frames): the target is 0.3 ms, a hundredth of the frame's 33 ms.
"""
import time

import numpy as np

from onbeat.choreographers.finishing import Finishing
from onbeat.choreographers.keyposes import KEY_POSES
from onbeat.core.music import synthetic_music

KEY_POSE_EVERY_S = 2.0


def bench_finishing(choreographer, seconds: float, rounds: int) -> dict:
    """{"frames": count, "median": ms, "p99": ms, "max": ms, "cpu": ms} per 30 fps frame (wall clock; "cpu": the
    thread's CPU time over all frames), over `rounds` passes."""
    frames = choreographer.slice_frames
    music = synthetic_music(seconds + 2 * frames / choreographer.fps)
    choreographer.reset()
    slices = [choreographer.next_slice(music[i:i + 2 * frames])
              for i in range(0, len(music) - 2 * frames + 1, frames)]
    names = list(KEY_POSES)
    timings, cpu = [], 0.0
    for _ in range(rounds):
        finishing = Finishing(choreographer.fps)
        next_strike = 1.0
        for index, motion in enumerate(slices):
            start = index * frames / choreographer.fps
            if start >= next_strike:
                finishing.strike(names[int(next_strike) % len(names)], start + finishing.landing.lead_seconds)
                next_strike += KEY_POSE_EVERY_S
            began, began_cpu = time.perf_counter(), time.thread_time()
            finishing(motion, start)
            cpu += time.thread_time() - began_cpu
            timings.append(1000.0 * (time.perf_counter() - began) / motion.num_frames)
    per_frame = np.array(timings)
    count = len(slices) * frames * rounds
    return {"frames": count, "median": float(np.median(per_frame)), "p99": float(np.percentile(per_frame, 99)),
            "max": float(per_frame.max()), "cpu": 1000.0 * cpu / count}


def format_table(rows: dict) -> str:
    header = (f"{'choreographer':<14} {'frames':>7} {'cpu ms/frame':>13} {'wall median':>12} {'wall p99':>9} "
              f"{'wall max':>9}")
    lines = [header, "-" * len(header)]
    for name, row in rows.items():
        lines.append(f"{name:<14} {row['frames']:>7} {row['cpu']:>13.3f} {row['median']:>12.3f} {row['p99']:>9.3f} "
                     f"{row['max']:>9.3f}")
    return "\n".join(lines)
