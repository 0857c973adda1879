"""`onbeat export`: a trained checkpoint to the ONNX graphs the live runtime loads, optionally with a parity check."""
from pathlib import Path

from onbeat.choreographers.kinds import trainable_kinds
from onbeat.core.paths import shipped_checkpoint
from onbeat.exporters.onnx_export import export


def add_arguments(parser):
    parser.add_argument("model", choices=trainable_kinds(), help="model kind to export")
    parser.add_argument("--checkpoint", help="trained checkpoint (.pt); default: the shipped small model")
    parser.add_argument("-o", "--output", required=True,
                        help="ONNX file to write (a kind of several graphs writes NAME.<graph>.onnx beside it)")
    parser.add_argument("--check", action="store_true", help="then compare torch and onnxruntime (parity)")


def run(args):
    checkpoint = Path(args.checkpoint) if args.checkpoint else shipped_checkpoint(args.model)
    paths = export(args.model, checkpoint, args.output)
    for path in paths:
        print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    if args.check:
        import torch

        from onbeat.exporters.parity import check_parity
        torch.set_num_threads(1)  # batch-1 steps: a second thread only adds waiting, badly so on a busy machine
        check_parity(args.model, checkpoint, args.output, report=print)
    return 0
