"""The one trainer for every model kind (`onbeat train KIND`).

A kind's torch model (registered in `onbeat.choreographers.kinds`) has `PRESETS` (dict of config dicts), `CONFIG`
(its config dataclass), `from_config(cfg, stats)` (stats: the dataset's normalizer arrays pose_mean, pose_std,
music_mean, music_std) and `loss(batch) -> (loss, logs)` where batch = {"motion": (B, W, POSE_DIM) raw rows,
"music": (B, W, F) raw, "music_mask": (B, W, 2) (see `onbeat.core.music`), "has_music": (B,)} float32 tensors and
"style": (B,) int64 ids (`onbeat.core.styles`). The dataset decides the conditioning: its
`WindowData.conditioning()` (the number of style ids) goes into the model config, so a model trained on it takes
style ids and the music mask.

Augmentations per training window: mirror (share `mirror`), a random crop (the start moved within one stride,
`crop`), and a joint time-stretch of motion and music (share `stretch`, tempo changed by up to +-`max_stretch`,
log-uniform).

Runs on CPU or CUDA, and on several processes/GPUs/machines under torchrun (DistributedDataParallel, initialised
from the WORLD_SIZE/RANK/... environment; gloo on CPU, nccl on CUDA; only rank 0 logs and saves). Checkpoints hold
model, optimiser, step, config, normalizer stats and RNG states (`onbeat.models.checkpoint`), so `--resume`
continues exactly.
"""
import json
import math
import os
import random
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from rich.progress import TextColumn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from onbeat.choreographers.kinds import kind_named
from onbeat.core.errors import OnbeatError
from onbeat.core.progress import progress_bar, shows_progress
from onbeat.models.checkpoint import model_state, read_checkpoint

TRAIN_DEFAULTS = {
    "batch_size": 64, "lr": 5e-4, "weight_decay": 0.01, "warmup": 200, "steps": 20000, "grad_clip": 1.0,
    "mirror": 0.5,  # share of windows reflected left <-> right
    "stretch": 0.5, "max_stretch": 0.15,  # share of windows time-stretched, and by how much at most (tempo +-15%)
    "crop": 1,  # 1: each window's start moves randomly within one stride; 0: fixed windows
    "eval_every": 500, "eval_batches": 16, "save_every": 1000, "log_every": 100,
}
CHECKPOINT = "checkpoint.pt"


def read_config(path):
    if path is None:
        return {}
    try:
        cfg = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise OnbeatError(f"{path}: cannot read JSON config ({e})") from None
    if not isinstance(cfg, dict):
        raise OnbeatError(f"{path}: config must be a JSON object")
    return cfg


ZERO_ALLOWED = {"warmup", "crop", "styles"}  # integer settings that may be 0; the others count something (>= 1)


def check_config(cfg, cls, source):
    """cfg, or OnbeatError naming `source` and the first unknown key or value of the wrong type or sign. The
    known keys and their types are the trainer's defaults and the model's config dataclass (`cls.CONFIG`)."""
    defaults = {**TRAIN_DEFAULTS, **asdict(cls.CONFIG())}
    unknown = sorted(set(cfg) - set(defaults))
    if unknown:
        raise OnbeatError(f"{source}: unknown config key{'s' * (len(unknown) > 1)} {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(defaults))})")
    for key, value in cfg.items():
        default, problem = defaults[key], None
        if isinstance(default, str):
            problem = None if isinstance(value, str) else "must be a string"
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            problem = f"must be a{'n integer' if isinstance(default, int) else ' number'}"
        elif isinstance(default, int):
            low = 0 if key in ZERO_ALLOWED else 1
            problem = f"must be an integer >= {low}" if value != int(value) or value < low else None
        elif value < 0 or (key == "lr" and value == 0):
            problem = "must be positive" if key == "lr" else "must be >= 0"
        if problem:
            raise OnbeatError(f"{source}: {key} = {value!r}: {problem}")
    return {key: int(value) if type(defaults[key]) is int else value for key, value in cfg.items()}


def setup_distributed(device):
    """(rank, world size); joins the process group when launched by torchrun (WORLD_SIZE > 1)."""
    dist = torch.distributed
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    if device == "cuda":
        torch.cuda.set_device(local_rank())
    return dist.get_rank(), world


class LossModule(nn.Module):
    """Wraps a model so that forward is its loss: DDP syncs the gradients of what forward computed."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, batch):
        return self.inner.loss(batch)


def batches(data, split, cfg, seed, rank, world, device):
    """Endless iterator of training batches (tensors on device), sharded across ranks by DistributedSampler."""
    indices = data.indices(split)
    if len(indices) == 0:
        raise OnbeatError(f"the dataset has no {'train' if split == 0 else 'validation'} windows")
    sampler = DistributedSampler(indices, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True)
    generator = np.random.default_rng(seed + 1000 * rank)

    def collate(chosen):
        augment = augmentations(len(chosen), cfg, int(data.arrays["stride"]), generator)
        arrays = data.batch(np.array(chosen), **augment)
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
    batch_size = min(cfg["batch_size"], max(1, len(indices) // world))
    loader = DataLoader(indices, batch_size=batch_size, sampler=sampler, collate_fn=collate, drop_last=True)
    epoch = 0
    while True:
        sampler.set_epoch(epoch)
        for batch in loader:
            yield {k: v.to(device) for k, v in batch.items()}
        epoch += 1


def augmentations(size, cfg, stride, generator):
    """The `WindowData.batch` augmentation arguments for `size` training windows, drawn from `generator`."""
    tempo = np.exp(generator.uniform(-1, 1, size) * np.log1p(cfg["max_stretch"]))
    stretched = generator.random(size) < cfg["stretch"]
    return {"mirrored": generator.random(size) < cfg["mirror"],
            "stretch": np.where(stretched, 1.0 / tempo, 1.0),
            "shift": generator.integers(0, stride, size) if cfg["crop"] else None}


def validation_loss(model, data, cfg, device):
    """Mean loss over fixed validation batches, with fixed randomness so values are comparable over time."""
    indices = data.indices(1)
    if len(indices) == 0:
        return float("nan")
    rng = np.random.default_rng(1234)
    model.eval()
    total = 0.0
    devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    with torch.no_grad(), torch.random.fork_rng(devices=devices):
        torch.manual_seed(1234)
        for _ in range(cfg["eval_batches"]):
            chosen = rng.choice(indices, size=min(cfg["batch_size"], len(indices)), replace=False)
            batch = {k: torch.from_numpy(v).to(device) for k, v in data.batch(chosen).items()}
            total += float(model.loss(batch)[0])
    model.train()
    return total / cfg["eval_batches"]


def learning_rate(cfg, step):
    """Linear warm-up, then cosine decay to 10%."""
    if step < cfg["warmup"]:
        return cfg["lr"] * (step + 1) / cfg["warmup"]
    progress = min(1.0, (step - cfg["warmup"]) / max(1, cfg["steps"] - cfg["warmup"]))
    return cfg["lr"] * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(kind, cfg, data, out, seed=0, device="cpu", resume=False):
    """Train a model of `kind`; returns the (unwrapped) model. Rank 0 writes <out>/checkpoint.pt and model.pt."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank, world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if distributed else (0, 1)
    out = Path(out)
    torch.manual_seed(seed)  # identical initial weights on every rank
    cfg = {**cfg, **data.conditioning()}
    model = kind_named(kind).model_class().from_config(cfg, data.stats).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    step = 0
    if resume:
        if not (out / CHECKPOINT).is_file():
            raise OnbeatError(f"{out / CHECKPOINT}: no checkpoint to resume from")
        state = read_checkpoint(out / CHECKPOINT)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        set_rng_state(state["rng"][min(rank, len(state["rng"]) - 1)])
    else:
        random.seed(seed + rank)
        torch.manual_seed(seed + rank)  # different noise per rank from here on
    wrapped = LossModule(model)
    if distributed:
        wrapped = DistributedDataParallel(wrapped, device_ids=[local_rank()] if device == "cuda" else None)
    stream = batches(data, 0, cfg, seed + step, rank, world, device)
    log = Progress(cfg["steps"], step, enabled=rank == 0)
    started = time.time()
    model.train()
    while step < cfg["steps"]:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(cfg, step)
        loss, logs = wrapped(next(stream))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
        optimizer.step()
        step += 1
        log.update(step, float(loss.detach()), logs)
        last = step == cfg["steps"]
        if rank == 0 and (step % cfg["eval_every"] == 0 or last):
            log.message(f"step {step}: validation loss {validation_loss(model, data, cfg, device):.4f}")
        if step % cfg["save_every"] == 0 or last:
            rng_states = gather(rng_state(), distributed, world)
            if rank == 0:
                save_checkpoint(out, kind, model, optimizer, step, cfg, data.stats, rng_states, time.time() - started)
    log.close()
    return model


def local_rank():
    return int(os.environ.get("LOCAL_RANK", "0"))


def gather(value, distributed, world):
    """Every rank's `value` (a picklable object), on every rank."""
    if not distributed:
        return [value]
    values = [None] * world
    torch.distributed.all_gather_object(values, value)
    return values


def rng_state():
    return {"python": random.getstate(), "torch": torch.get_rng_state()}


def set_rng_state(state):
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(out, kind, model, optimizer, step, cfg, stats, rng_states, seconds):
    out.mkdir(parents=True, exist_ok=True)
    weights = model_state(kind, model, stats, cfg, step, seconds)
    temporary = out / (CHECKPOINT + ".tmp")
    torch.save({**weights, "optimizer": optimizer.state_dict(), "rng": rng_states}, temporary)
    os.replace(temporary, out / CHECKPOINT)  # never leave a half-written checkpoint behind
    torch.save(weights, out / "model.pt")


class Progress:
    """A progress bar on a terminal (`core.progress`), plain log lines otherwise (CI logs, nohup)."""

    def __init__(self, total, start, enabled):
        self.enabled, self.total, self.every = enabled, total, max(1, total // 100)
        self.bar = None
        self.started, self.first = time.time(), start
        if enabled and shows_progress():
            self.bar = progress_bar(TextColumn("{task.fields[losses]}"), transient=False)
            self.task = self.bar.add_task("train", total=total, completed=start, losses="")
            self.bar.start()

    def update(self, step, loss, logs):
        if not self.enabled:
            return
        details = " ".join(f"{k} {v:.3f}" for k, v in logs.items())
        if self.bar is not None:
            self.bar.update(self.task, completed=step, losses=f"loss {loss:.4f} {details}")
        elif step % self.every == 0:
            rate = (step - self.first) / max(1e-9, time.time() - self.started)
            print(f"step {step}/{self.total}: loss {loss:.4f} {details} ({rate:.1f} steps/s)", flush=True)

    def message(self, text):
        if not self.enabled:
            return
        print(text, flush=True)  # above the bar: rich redirects stdout while it draws

    def close(self):
        if self.bar is not None:
            self.bar.stop()
