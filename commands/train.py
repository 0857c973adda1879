"""`onbeat train`: train a choreographer (single process, or DDP under torchrun)."""
import os
from pathlib import Path

import torch

from onbeat.choreographers.kinds import kind_named, trainable_kinds
from onbeat.core.errors import OnbeatError
from onbeat.models.train import TRAIN_DEFAULTS, check_config, read_config, setup_distributed, train


def add_arguments(parser):
    parser.add_argument("model", choices=trainable_kinds(), help="model kind")
    parser.add_argument("--config", type=Path, help="JSON file of config values (model and training)")
    parser.add_argument("--preset", default="small", help="named config of the model kind (default: small)")
    parser.add_argument("--data", type=Path, default=Path("data.npz"), help="dataset from `onbeat dataset build`")
    parser.add_argument("--out", type=Path, default=None, help="run folder (default: runs/<model>)")
    parser.add_argument("--steps", type=int, help="total optimisation steps (overrides the config)")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")


def run(args):
    cls = kind_named(args.model).model_class()
    if args.preset not in cls.PRESETS:
        raise OnbeatError(f"unknown preset {args.preset!r} for {args.model} (have: {', '.join(cls.PRESETS)})")
    cfg = {**TRAIN_DEFAULTS, **cls.PRESETS[args.preset], **check_config(read_config(args.config), cls, args.config)}
    if args.steps is not None:
        cfg["steps"] = check_config({"steps": args.steps}, cls, "--steps")["steps"]
    if args.device == "cuda" and not torch.cuda.is_available():
        raise OnbeatError("--device cuda: no CUDA device is available to torch")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    from onbeat.models.dataset import WindowData
    if not args.data.is_file():
        raise OnbeatError(f"{args.data}: dataset not found (build it with `onbeat dataset build -o {args.data}`)")
    data = WindowData.load(args.data)
    out = args.out or Path("runs") / args.model
    rank, world = setup_distributed(device)
    torch.set_num_threads(args.threads or max(1, min(2, (os.cpu_count() or 1) // world)))
    try:
        train(args.model, cfg, data, out, seed=args.seed, device=device, resume=args.resume)
    finally:
        if world > 1:
            torch.distributed.destroy_process_group()
    return 0
