"""Argument types shared by the commands: argparse refuses a bad value with one line naming the option."""
import argparse
import math


def finite_float(text: str) -> float:
    """A float option: NaN and infinities are refused (`--seconds nan` would run forever)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def port(text: str) -> int:
    """A UDP port, 0..65535 (where the option says so, 0 means off)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port (0..65535)")
    return value


def output_rate(text: str) -> float:
    """Output frames per second, 1..240."""
    value = finite_float(text)
    if not 1 <= value <= 240:
        raise argparse.ArgumentTypeError(f"{text}: choose 1..240 frames per second")
    return value


def require_finite_floats(parser: argparse.ArgumentParser) -> None:
    """Every `type=float` option of `parser` refuses NaN and infinities."""
    for action in parser._actions:  # argparse has no public way to walk a parser's options
        if action.type is float:
            action.type = finite_float
