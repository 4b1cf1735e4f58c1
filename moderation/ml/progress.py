"""Progress reports of long runs (training, distilling the encoder, scoring many texts) to whoever runs them.

The ml package prints nothing: it calls a `Progress` callback in two ways. `progress(message)` says what
happens next; `progress(phase, done, total)` counts the steps of a phase, first `(phase, 0, total)`, last
`(phase, total, total)`, so the caller can draw a bar on a terminal or write a few lines to a log.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, TypeVar

import numpy as np

T = TypeVar("T")


class Progress(Protocol):
    def __call__(self, message: str, done: int | None = None, total: int | None = None, /) -> None:
        """Say what happens next, or count a phase's steps (`done` of `total`)."""


def silent(message: str, done: int | None = None, total: int | None = None, /) -> None:
    """Report nothing."""


def counted(items: Sequence[T], progress: Progress, phase: str, *, steps: int = 100) -> Iterator[T]:
    """Yield `items`, reporting the phase at the start, at most `steps` times on the way, and at the end.

    An item counts as done once the caller asks for the next one.
    """
    total = len(items)
    every = max(1, total // steps)
    progress(phase, 0, total)
    for done, item in enumerate(items, start=1):
        yield item
        if done % every == 0 or done == total:
            progress(phase, done, total)


def score_in_batches(score: Callable[[list[str]], np.ndarray], texts: Sequence[str], progress: Progress,
                     phase: str, *, size: int = 256) -> np.ndarray:
    """Return `score(batch)` over `texts` in batches of `size`, counting the texts scored."""
    progress(phase, 0, len(texts))
    parts = []
    for start in range(0, len(texts), size):
        parts.append(np.asarray(score(list(texts[start:start + size])), dtype=float))
        progress(phase, min(start + size, len(texts)), len(texts))
    return np.concatenate(parts) if parts else np.zeros(0)
