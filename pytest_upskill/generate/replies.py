"""The replies a session needs: replayed from cassettes, or asked for concurrently.

After collection each process starts asking for the replies of the whole session, at most
`concurrency` at a time (under xdist every worker collects every item but cannot know which it
will run, so each starts its own share of the way in); a test then waits only for its own
reply. One slot per reply makes one asker in a process: a prefetch thread or the test that needs
it, whichever comes first. Under xdist, workers ask the controller (`relay`), which asks each
model once for the whole session and keeps the cassettes.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from ..config import ModelSpec
from ..errors import SampleError, UpskillIssue
from ..pool import DaemonPool
from .cassettes import Cassettes
from .providers import Provider, Reply, Request, provider_for

if TYPE_CHECKING:
    from pathlib import Path

    from ..config import Settings
    from .relay import ControllerLink

__all__ = ["Replies"]

T = TypeVar("T")


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
        scratch: Path,
        timeout_s: float = 600.0,
        settings: Settings | None = None,
        link: ControllerLink | None = None,
    ) -> None:
        self.store = store
        self.scratch = scratch  # the session's own folder: gone with the session
        self.link = link  # an xdist worker's way to the controller, which asks the models
        self.timeout_s = timeout_s  # each request's
        self.settings = settings  # for agent CLIs: their limits and what they are passed
        self._making = threading.Lock()  # providers are made from any thread
        self._pool = DaemonPool(concurrency, "upskill-model")
        # Requests in flight from this process: its prefetch threads and its tests together.
        self._in_flight = threading.BoundedSemaphore(concurrency)
        self._slots: dict[Path, _Slot] = {}
        self._slotting = threading.Lock()
        self._providers: dict[str, Provider] = {}
        # Servers checked before the run, by endpoint: why each cannot be reached (None: it can).
        self._unreachable: dict[str, str | None] = {}

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
        setup = AgentSetup(self.scratch / "agents", self.store, self.settings)
        return AgentProvider(spec, setup)

    def prepare(self, specs: Iterable[ModelSpec]) -> None:
        """Import the SDKs and make the clients in the background while pytest collects."""
        if self.store.mode != "none" and self.link is None:
            for spec in specs:
                if spec.provider != "oracle":
                    self._pool.submit(self.provider(spec).prepare)

    def check_servers(self, specs: Iterable[ModelSpec]) -> list[str]:
        """Ask each model's own server once, before the run (`Provider.check`): one line per
        problem. The samples of a server that cannot be reached end as errors at once, without
        each waiting on its own timeouts."""
        if self.store.mode == "none" or self.link is not None:
            return []  # replay only, or an xdist worker: no server is asked from here
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

    def prefetch(
        self,
        requests: Iterable[Request],
        worker: int = 0,
        workers: int = 1,
        then: Callable[[Request, Reply], None] | None = None,
    ) -> int:
        """Start asking for the replies of `requests`, worker `worker` of `workers` starting
        its own share of the way in; how many replies will need a model. `then` gets each
        reply a prefetch thread got, as it arrives."""
        unique: dict[Path, Request] = {}
        for request in requests:
            if request.spec.provider != "oracle":
                unique.setdefault(self.store.path(request), request)
        ordered = list(unique.items())
        shift = len(ordered) * worker // max(workers, 1)
        pending = 0
        for path, request in ordered[shift:] + ordered[:shift]:
            if path in self._slots:
                continue
            # `all` and `off` ask again whatever is on disk; `new` asks for what is missing.
            mode = self.store.mode
            pending += mode in ("all", "off") or (mode == "new" and not path.exists())
            self._pool.submit(partial(self._prefetch, request, self._slot(path), then))
        return pending

    def reply(self, request: Request) -> Reply:
        """The reply to `request`: waits for it if it is on its way, else asks for it now."""
        if request.spec.provider == "oracle":
            return self.provider(request.spec).generate(request)
        slot = self._slot(self.store.path(request))
        with slot.claim:  # a prefetch thread asking for it holds the claim until it is done
            if slot.done:  # asked for already, by this process: its reply, or its error again
                return slot.result()
            return slot.fill(partial(self._fetch, request))

    def close(self) -> None:
        """At the session's end: drop what is queued and cut what is being asked."""
        self._pool.shutdown()
        for provider in self._providers.values():
            provider.close()

    def _slot(self, path: Path) -> _Slot:
        with self._slotting:
            return self._slots.setdefault(path, _Slot())

    def _prefetch(
        self, request: Request, slot: _Slot, then: Callable[[Request, Reply], None] | None
    ) -> None:
        if not slot.claim.acquire(blocking=False):
            return  # the test that needs it is getting it
        try:
            if not slot.done:
                reply = slot.fill(partial(self._fetch, request))
                if then is not None:
                    then(request, reply)  # queues work: it raises nothing of the reply's
        except BaseException:
            pass  # the reply's failure is kept on the slot for the test that needs it
        finally:
            slot.claim.release()

    def _fetch(self, request: Request) -> Reply:
        try:
            if self.link is not None:
                return self.link.ask(request)
            return self._replay_or_ask(request)
        except UpskillIssue:
            raise
        except Exception as exc:  # a provider's own bug: still one line, still not the model's
            label = request.spec.label
            raise SampleError("generate", f"{label}: {type(exc).__name__}: {exc}") from None

    def _replay_or_ask(self, request: Request) -> Reply:
        if request.spec.provider == "agent":  # it records and replays its CLI's traffic
            with self._in_flight:
                return self.provider(request.spec).generate(request)
        recorded = self.store.load(request)
        if recorded is not None:
            return recorded
        return self._ask(request)

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
        if self.store.mode != "off":  # off: kept on its slot for this session only
            self.store.save(request, reply)
        return reply
