"""Progress for long jobs: a bar on stderr when it is a terminal, nothing when it is not (CI logs, pipes) or when
the user said `--quiet`."""
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


def shows_progress(quiet: bool = False) -> bool:
    """Whether a bar would be seen: stderr is a terminal and the user did not ask for `--quiet`."""
    return not quiet and sys.stderr.isatty()


def progress_bar(*extra: ProgressColumn, transient: bool = True) -> Progress:
    """onbeat's bar on stderr: description, bar, done/total, elapsed, time left, then the `extra` columns."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("left"), TimeRemainingColumn(), *extra)
    return Progress(*columns, console=Console(stderr=True), transient=transient)


def tracked(items: Iterable[T], total: int | None = None, what: str = "working", quiet: bool = False) -> Iterator[T]:
    """`items`, one by one, with a progress bar titled `what` (the bar disappears when done)."""
    if not shows_progress(quiet):
        yield from items
        return
    with progress_bar() as bar:
        task = bar.add_task(what, total=total if total is not None else getattr(items, "__len__", lambda: None)())
        for item in items:
            yield item
            bar.advance(task)
