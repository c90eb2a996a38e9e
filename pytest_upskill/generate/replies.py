"""The replies a session needs: replayed from cassettes, or asked for concurrently.

After collection each process starts asking for the replies of the whole session, at most
`concurrency` at a time, from its own starting point (under xdist every worker collects every
item but cannot know which it will run); a test then waits only for its own reply. A lock per
reply makes one asker: a process finding a reply's lock taken moves on to the next and comes
back, and a test whose reply another process is asking for waits on the lock and then reads the
recording (under record=off, from the session's scratch folder). So a reply is asked for once,
however the tests are distributed: what a worker that ends early leaves unasked the others ask,
and it finishes what it is asking before it exits.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from filelock import FileLock, Timeout

from ..config import ModelSpec
from ..errors import SampleError, SampleSkipped, UpskillIssue
from .cassettes import Cassettes
from .providers import Provider, Reply, Request, provider_for

if TYPE_CHECKING:
    from ..config import Settings

__all__ = ["Replies"]

T = TypeVar("T")

# The longest a test waits for another process asking for the same reply (retries included).
_WAIT_S = 3600.0
# How long a prefetch thread that found a reply's lock taken waits before trying the next one.
_BUSY_PAUSE_S = 0.05


@dataclass
class _Slot:
    """One reply of the session in this process: a prefetch thread or the test that needs it
    fills it, whichever claims it first; the other one reads it."""

    claim: threading.Lock = field(default_factory=threading.Lock)
    done: bool = False
    reply: Reply | None = None
    error: BaseException | None = None

    def fill(self, get: Callable[[], Reply]) -> Reply:
        try:
            self.reply = get()
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            self.done = True
        return self.reply

    def result(self) -> Reply:
        if self.error is not None:
            raise self.error
        assert self.reply is not None
        return self.reply


class Replies:
    def __init__(
        self,
        store: Cassettes,
        concurrency: int,
        locks: Path,
        timeout_s: float = 600.0,
        settings: Settings | None = None,
    ) -> None:
        self.store = store
        self.locks = locks  # the session's own folder: gone with the session, locks and all
        self.timeout_s = timeout_s  # each request's
        self.settings = settings  # for agent CLIs: their limits and what they are passed
        self._making = threading.Lock()  # providers are made from any thread
        self._pool = _DaemonPool(concurrency)
        # Requests in flight from this process: its prefetch threads and its tests together.
        self._in_flight = threading.BoundedSemaphore(concurrency)
        self._slots: dict[Path, _Slot] = {}
        self._providers: dict[str, Provider] = {}
        # Servers checked before the run, by endpoint: why each cannot be reached (None: it can).
        self._unreachable: dict[str, str | None] = {}
        self._shared = False  # other processes (xdist workers) may need this one's replies
        # Set when the session ended without an interrupt: then what is being asked is finished.
        self.ended_normally = False

    def provider(self, spec: ModelSpec) -> Provider:
        with self._making:
            key = repr(spec.endpoint)  # one client per endpoint, its credentials included
            if key not in self._providers:
                self._providers[key] = self._make(spec)
            return self._providers[key]

    def _make(self, spec: ModelSpec) -> Provider:
        if spec.provider != "agent":
            return provider_for(spec, self.timeout_s)
        from ..clients.provider import AgentProvider, AgentSetup

        assert self.settings is not None, "agent CLIs need the session's settings"
        setup = AgentSetup(self.locks.parent / "agents", self.store, self.settings)
        return AgentProvider(spec, setup)

    def prepare(self, specs: Iterable[ModelSpec]) -> None:
        """Import the SDKs and make the clients in the background while pytest collects."""
        if self.store.mode != "none":
            for spec in specs:
                if spec.provider != "oracle":
                    self._pool.submit(self.provider(spec).prepare)

    def check_servers(self, specs: Iterable[ModelSpec]) -> list[str]:
        """Ask each model's own server once, before the run (`Provider.check`): one line per
        problem. The samples of a server that cannot be reached end as errors at once, without
        each waiting on its own timeouts."""
        if self.store.mode == "none":
            return []  # replay only: no server is asked
        lines = []
        for spec in specs:
            key = repr(spec.endpoint)
            if key in self._unreachable:
                continue
            unreachable, warning = self.provider(spec).check()
            self._unreachable[key] = unreachable
            if unreachable is not None:
                lines.append(
                    f"{spec.label}: {unreachable}: its samples without a recorded reply "
                    "end as errors"
                )
            if warning is not None:
                lines.append(f"{spec.label}: {warning}")
        return lines

    def prefetch(self, requests: Iterable[Request], worker: int = 0, workers: int = 1) -> int:
        """Start asking for the replies of `requests`, worker `worker` of `workers` starting
        its own share of the way in; how many replies will need a model."""
        unique: dict[Path, Request] = {}
        for request in requests:
            if request.spec.provider != "oracle":
                unique.setdefault(self.store.path(request), request)
        self._shared = workers > 1
        ordered = list(unique.items())
        shift = len(ordered) * worker // max(workers, 1)
        pending = 0
        for path, request in ordered[shift:] + ordered[:shift]:
            if path in self._slots:
                continue
            # `all` and `off` ask again whatever is on disk; `new` asks for what is missing.
            mode = self.store.mode
            pending += mode in ("all", "off") or (mode == "new" and not path.exists())
            slot = self._slots[path] = _Slot()
            self._pool.submit(partial(self._prefetch, request, slot))
        return pending

    def reply(self, request: Request) -> Reply:
        """The reply to `request`: waits for it if it is on its way, else asks for it now."""
        if request.spec.provider == "oracle":
            return self.provider(request.spec).generate(request)
        slot = self._slots.get(self.store.path(request))
        if slot is None:
            return self._fetch(request, wait=True)
        with slot.claim:  # a prefetch thread asking for it holds the claim until it is done
            if slot.done:
                return slot.result()
            return slot.fill(partial(self._fetch, request, wait=True))

    def close(self) -> None:
        """At the session's end: drop what is queued. What is being asked is finished first when
        other processes may need it and the session was not interrupted (else they would ask
        again); on Ctrl-C it is cut."""
        self._pool.shutdown(wait=self._shared and self.ended_normally)
        for provider in self._providers.values():
            provider.close()

    def _prefetch(self, request: Request, slot: _Slot) -> None:
        if not slot.claim.acquire(blocking=False):
            return  # the test that needs it is getting it
        try:
            if slot.done:
                return
            try:
                slot.fill(partial(self._fetch, request, wait=False))
            except _Busy:  # another process is asking: come back to it after the others
                slot.done, slot.error = False, None
                time.sleep(_BUSY_PAUSE_S)
                self._pool.submit(partial(self._prefetch, request, slot))
            except BaseException:
                pass  # kept on the slot for the test that needs it
        finally:
            slot.claim.release()

    def _fetch(self, request: Request, wait: bool) -> Reply:
        # One asker per reply across the session's processes.
        self.locks.mkdir(parents=True, exist_ok=True)
        timeout = _WAIT_S if wait else 0
        lock = FileLock(str(self.locks / self.store.path(request).name), timeout=timeout)
        try:
            with lock:
                return self._replay_or_ask(request)
        except Timeout:
            if not wait:
                raise _Busy from None
            raise SampleError(
                "generate", f"waited {_WAIT_S:g} s for another process asking for this reply"
            ) from None
        except UpskillIssue:
            raise
        except Exception as exc:  # a provider's own bug: still one line, still not the model's
            label = request.spec.label
            raise SampleError("generate", f"{label}: {type(exc).__name__}: {exc}") from None

    def _replay_or_ask(self, request: Request) -> Reply:
        agent = request.spec.provider == "agent"  # it records and replays its CLI's traffic
        recorded = None if agent else self.store.load(request)
        if recorded is not None:
            return recorded
        # Asked for already in this session, and it failed: the same error, not a second ask.
        failed = self.locks / f"{self.store.path(request).stem}.failed"
        if failed.exists():
            raise SampleError("generate", failed.read_text(encoding="utf-8"))
        try:
            if agent:
                with self._in_flight:
                    return self.provider(request.spec).generate(request)
            return self._ask(request)
        except SampleSkipped:
            raise  # this machine lacks something: each process finds out for itself
        except UpskillIssue as issue:
            failed.write_text(issue.reason, encoding="utf-8")
            raise

    def _ask(self, request: Request) -> Reply:
        label = request.spec.label
        if self.store.mode == "none":
            raise SampleError(
                "generate",
                f"{label}: no recorded reply ({self.store.path(request).name}) and "
                "--upskill-record=none: record it with --upskill-record=new",
            )
        unreachable = self._unreachable.get(repr(request.spec.endpoint))
        if unreachable is not None:
            raise SampleError("generate", f"{label}: {unreachable} (checked before the run)")
        provider = self.provider(request.spec)
        missing = provider.missing_key()
        if missing is not None:
            raise SampleError("generate", f"{label}: {missing}")
        asked = time.perf_counter()
        with self._in_flight:
            waited = time.perf_counter() - asked
            reply = provider.generate(request)
        reply = dataclasses.replace(reply, wait_s=waited)
        self.store.save(request, reply)
        return reply


class _Busy(Exception):
    """Another process holds the reply's lock: it is asking for it."""


class _DaemonPool:
    """A thread pool whose threads are daemons. concurrent.futures joins its threads at exit, so
    a session ended by Ctrl-C would wait minutes for a model still writing a reply."""

    def __init__(self, workers: int) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None]
        self._jobs = queue.SimpleQueue()
        self._workers = workers
        self._threads: list[threading.Thread] = []
        self._closed = False

    def submit(self, job: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        if self._closed:  # a job that came back after the end: nobody waits for it
            future.cancel()
            return future
        self._jobs.put((future, job))
        if not self._threads:  # started on first use: a session may need no model at all
            for index in range(self._workers):
                name = f"upskill-model-{index}"
                thread = threading.Thread(target=self._work, name=name, daemon=True)
                thread.start()
                self._threads.append(thread)
        return future

    def shutdown(self, wait: bool = False) -> None:
        """Cancel what has not started; threads end after their current job, which `wait`
        waits for."""
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
        if wait:
            for thread in self._threads:
                thread.join()

    def _work(self) -> None:
        while (item := self._jobs.get()) is not None:
            future, job = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(job())
            except BaseException as exc:
                future.set_exception(exc)
