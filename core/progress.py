"""Progress for long jobs: a bar on stderr when it is a terminal, nothing when it is not (CI logs, pipes) or when
the user said `--quiet`."""
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")


def tracked(items: Iterable[T], total: int | None = None, what: str = "working", quiet: bool = False) -> Iterator[T]:
    """`items`, one by one, with a progress bar titled `what` (the bar disappears when done)."""
    if quiet or not sys.stderr.isatty():
        yield from items
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("left"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(what, total=total if total is not None else getattr(items, "__len__", lambda: None)())
        for item in items:
            yield item
            bar.advance(task)
