"""Threads in tests: every join is bounded, and a thread still running at its deadline fails the test.

* :func:`run_threads`: ``count`` threads start together and each runs ``target(index)`` once;
* :func:`hammer`: ``count`` threads each send ``per_thread`` requests, switching as often as
  the interpreter allows, and every answer and exception is collected;
* :class:`Background`: one request started now and awaited later (the slow side of a race).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

#: the longest a test waits for its threads
JOIN_TIMEOUT = 120.0


def _join_all(threads: list[threading.Thread], timeout: float) -> None:
    for thread in threads:
        thread.join(timeout)
    stuck = sum(thread.is_alive() for thread in threads)
    assert stuck == 0, f"{stuck} of {len(threads)} threads were still running after {timeout:g}s"


def run_threads(count: int, target: Callable[[int], None], *, timeout: float = JOIN_TIMEOUT) -> None:
    """Run ``target(i)`` for i in range(count), all threads released at once; re-raise the first error."""
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def guarded(index: int) -> None:
        try:
            start.wait(timeout=30)
            target(index)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    _join_all(threads, timeout)
    if errors:
        raise errors[0]


def hammer(request: Callable[[int], T], *, count: int, per_thread: int, timeout: float = JOIN_TIMEOUT,
           switch_often: bool = True) -> tuple[list[T], list[BaseException]]:
    """``count`` threads each call ``request(index)`` ``per_thread`` times: every result and every exception.

    With ``switch_often`` threads switch as often as the interpreter allows, so
    in-memory requests really interleave (requests that wait on a server
    interleave anyway, and would only pay for the switching).
    """
    results: list[T] = []
    errors: list[BaseException] = []
    guard = threading.Lock()

    def worker(index: int) -> None:
        for _ in range(per_thread):
            try:
                result = request(index)
            except BaseException as exc:  # noqa: BLE001 - returned to the test
                with guard:
                    errors.append(exc)
            else:
                with guard:
                    results.append(result)

    interval = sys.getswitchinterval()
    if switch_often:
        sys.setswitchinterval(1e-6)
    try:
        run_threads(count, worker, timeout=timeout)
    finally:
        sys.setswitchinterval(interval)
    return results, errors


class Background(Generic[T]):
    """``action()`` running in a thread of its own from now on; :meth:`result` waits for it, bounded."""

    def __init__(self, action: Callable[[], T]) -> None:
        self._value: T | None = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._value = action()
            except BaseException as exc:  # noqa: BLE001 - re-raised by result()
                self._error = exc

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def result(self, timeout: float = 30.0) -> T:
        """What ``action()`` returned (its exception is re-raised); fails if it is still running."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"the background request was still running after {timeout:g}s"
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]
