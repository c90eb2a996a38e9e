"""A pool of daemon threads, for the session's background work: asking models, building ahead."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["DaemonPool"]

T = TypeVar("T")


class DaemonPool:
    """A thread pool whose threads are daemons. concurrent.futures joins its threads at exit, so
    a session ended by Ctrl-C would wait minutes for a model still writing a reply."""

    def __init__(self, workers: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None]
        self._jobs = queue.SimpleQueue()
        self._workers = workers
        self._name = name
        self._starting = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, job: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        with self._starting:  # one lock with shutdown: no thread starts after the end
            if self._closed:  # a job that came back after the end: nobody waits for it
                future.cancel()
                return future
            self._jobs.put((future, job))
            if not self._threads:  # started on first use: a session may need no model at all
                for index in range(self._workers):
                    name = f"{self._name}-{index}"
                    thread = threading.Thread(target=self._work, name=name, daemon=True)
                    thread.start()
                    self._threads.append(thread)
        return future

    def shutdown(self, wait_s: float = 0.0) -> None:
        """Cancel what has not started; threads end after their current job, which this waits
        for `wait_s` seconds at most (all threads together)."""
        with self._starting:
            self._closed = True
        while True:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        for _ in self._threads:
            self._jobs.put(None)
        deadline = time.monotonic() + wait_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _work(self) -> None:
        while (item := self._jobs.get()) is not None:
            future, job = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job())
            except BaseException as exc:
                future.set_exception(exc)
