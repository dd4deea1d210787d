"""Overlapping I/O with work: an iterator read ahead in a thread (pure Python, no service of its own)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
_END = object()


def read_ahead(items: Iterable[T], depth: int = 1000) -> Iterator[T]:
    """Yield `items` in order while a thread keeps up to `depth` of them fetched ahead (e.g. the next page of
    a paged API while the caller works on this one). An exception in the reader is raised in the caller, at
    the point where the item it failed on would have come; closing the generator stops the reader."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def reader() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, raised there
            buffer.put(exc)

    thread = threading.Thread(target=reader, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
