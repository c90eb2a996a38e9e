"""The replies a session needs: replayed from cassettes, or asked for concurrently.

After collection each process starts asking for its share of the replies its items need, at most
`concurrency` at a time; a test then waits only for its own reply. Under xdist every worker
collects every item, so each takes every n-th reply; a test whose reply another worker is asking
for waits on that reply's lock and then reads the recording, and one whose reply nobody has asked
for yet asks for it itself. Either way a reply is asked for once.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from filelock import FileLock, Timeout

from ..config import ModelSpec
from ..errors import SampleError, UpskillIssue
from .cassettes import Cassettes
from .providers import Provider, Reply, Request, provider_for

__all__ = ["Replies"]

T = TypeVar("T")

# The longest a test waits for another process asking for the same reply (retries included).
_WAIT_S = 3600.0


class Replies:
    def __init__(self, store: Cassettes, concurrency: int, locks: Path) -> None:
        self.store = store
        self.locks = locks  # the session's own folder: gone with the session, locks and all
        self._making = threading.Lock()  # providers are made from any thread
        self._pool = _DaemonPool(concurrency)
        self._futures: dict[Path, Future[Reply]] = {}
        self._providers: dict[str, Provider] = {}

    def provider(self, spec: ModelSpec) -> Provider:
        with self._making:
            key = str(spec)
            if key not in self._providers:
                self._providers[key] = provider_for(spec)
            return self._providers[key]

    def prepare(self, specs: Iterable[ModelSpec]) -> None:
        """Import the SDKs and make the clients in the background while pytest collects."""
        if self.store.mode != "none":
            for spec in specs:
                if spec.provider != "oracle":
                    self._pool.submit(self.provider(spec).prepare)

    def prefetch(self, requests: Iterable[Request], worker: int = 0, workers: int = 1) -> int:
        """Start asking for this process's share of `requests`; how many will need a model."""
        unique: dict[Path, Request] = {}
        for request in requests:
            if request.spec.provider != "oracle":
                unique.setdefault(self.store.path(request), request)
        pending = 0
        for position, (path, request) in enumerate(unique.items()):
            if position % workers != worker or path in self._futures:
                continue
            # `all` and `off` ask again whatever is on disk; `new` asks for what is missing.
            mode = self.store.mode
            pending += mode in ("all", "off") or (mode == "new" and not path.exists())
            self._futures[path] = self._pool.submit(partial(self._fetch, request))
        return pending

    def reply(self, request: Request) -> Reply:
        """The reply to `request`: waits for it if it is on its way, else asks for it now."""
        if request.spec.provider == "oracle":
            return self.provider(request.spec).generate(request)
        future = self._futures.get(self.store.path(request))
        return future.result() if future is not None else self._fetch(request)

    def close(self) -> None:
        """At the session's end (Ctrl-C included): drop what is queued, cut what is in flight."""
        self._pool.shutdown()
        for provider in self._providers.values():
            provider.close()

    def _fetch(self, request: Request) -> Reply:
        # One asker per reply across the session's processes.
        self.locks.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.locks / self.store.path(request).name), timeout=_WAIT_S)
        try:
            with lock:
                return self._replay_or_ask(request)
        except Timeout:
            raise SampleError(
                "generate", f"waited {_WAIT_S:g} s for another process asking for this reply"
            ) from None
        except UpskillIssue:
            raise
        except Exception as exc:  # a provider's own bug: still one line, still not the model's
            label = request.spec.label
            raise SampleError("generate", f"{label}: {type(exc).__name__}: {exc}") from None

    def _replay_or_ask(self, request: Request) -> Reply:
        recorded = self.store.load(request)
        if recorded is not None:
            return recorded
        label = request.spec.label
        if self.store.mode == "none":
            raise SampleError(
                "generate",
                f"{label}: no recorded reply ({self.store.path(request).name}) and "
                "--upskill-record=none: record it with --upskill-record=new",
            )
        provider = self.provider(request.spec)
        missing = provider.missing_key()
        if missing is not None:
            raise SampleError("generate", f"{label}: {missing}")
        reply = provider.generate(request)
        self.store.save(request, reply)
        return reply


class _DaemonPool:
    """A thread pool whose threads are daemons. concurrent.futures joins its threads at exit, so
    a session ended by Ctrl-C would wait minutes for a model still writing a reply."""

    def __init__(self, workers: int) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None]
        self._jobs = queue.SimpleQueue()
        self._workers = workers
        self._threads: list[threading.Thread] = []

    def submit(self, job: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self._jobs.put((future, job))
        if not self._threads:  # started on first use: a session may need no model at all
            for index in range(self._workers):
                name = f"upskill-model-{index}"
                thread = threading.Thread(target=self._work, name=name, daemon=True)
                thread.start()
                self._threads.append(thread)
        return future

    def shutdown(self) -> None:
        """Cancel what has not started; threads end after their current job."""
        while True:
            try:
                item = self._jobs.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].cancel()
        for _ in self._threads:
            self._jobs.put(None)

    def _work(self) -> None:
        while (item := self._jobs.get()) is not None:
            future, job = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job())
            except BaseException as exc:
                future.set_exception(exc)
