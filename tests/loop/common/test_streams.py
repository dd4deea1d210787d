"""read_ahead: same items, same order, the reader's exception raised in the caller, the reader stopped."""

from __future__ import annotations

import threading

import pytest

from loop.common.streams import read_ahead


def test_items_come_in_order_and_all_of_them():
    assert list(read_ahead(iter(range(2500)), depth=7)) == list(range(2500))
    assert list(read_ahead([])) == []


def test_the_readers_exception_reaches_the_caller_after_the_items_before_it():
    def failing():
        yield 1
        yield 2
        raise ConnectionError("page 3 failed")

    seen = []
    with pytest.raises(ConnectionError, match="page 3 failed"):
        for item in read_ahead(failing(), depth=1):
            seen.append(item)
    assert seen == [1, 2]


def test_closing_early_stops_the_reader():
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    stream = read_ahead(endless(), depth=3)
    assert [next(stream) for _ in range(5)] == [0, 1, 2, 3, 4]
    stream.close()
    assert not any(t.name == "read-ahead" and t.is_alive() for t in threading.enumerate())
    assert len(produced) <= 5 + 3 + 1  # it read at most `depth` ahead
