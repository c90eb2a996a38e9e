"""Replies for xdist workers on any machine, asked for by the controller.

Each worker reaches the controller over an execnet channel of xdist's own gateway (it travels
to the worker in `workerinput`), so a worker started with `--tx ssh=` or `--tx socket=` needs
neither the controller's filesystem nor its keys nor its cassettes: it sends what it would ask,
the controller asks the model (or replays its cassette, or runs the agent CLI) once for the
whole session, records it where it keeps its cassettes, and answers.

What a worker sends names the model by its label and an installed skill by its hash: the
controller asks with its own model specs and skills, so no worker can point the controller's
keys at another server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from ..errors import SampleError, SampleFailed, SampleSkipped, UpskillIssue
from .prompt import Prompt
from .providers import Message, Reply, Request, Tool

if TYPE_CHECKING:
    from ..config import Settings
    from ..skill import Skill
    from .replies import Replies

__all__ = ["ControllerLink", "ReplyRelay", "WireRequest", "serialize_sends"]

# The most text one message may carry: a conversation with its files, or a reply.
_MAX_MESSAGE = 64 << 20
# The most of an agent CLI's transcript a worker gets.
_MAX_TRANSCRIPT = 16 << 20
# The most requests of one worker the controller works on at once (a worker asks its
# --upskill-concurrency at a time, and its tests one each).
_MOST_ASKS = 64

_REPLY = TypeAdapter(Reply)
_ISSUES: dict[str, type[UpskillIssue]] = {
    "failed": SampleFailed,
    "error": SampleError,
    "skipped": SampleSkipped,
}


class WireRequest(BaseModel):
    """A request as a worker sends it: everything that decides the reply, by name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str  # the model's label
    system: str
    user: str
    skill_chars: int = 0
    sample: int
    temperature: float | None = None
    max_tokens: int
    params: dict[str, Any] = {}
    history: tuple[Message, ...] = ()
    tools: tuple[Tool, ...] = ()
    install: str = ""  # the hash of the skill an agent CLI gets installed ('' for none)

    @classmethod
    def of(cls, request: Request) -> WireRequest:
        return cls(
            model=request.spec.label,
            system=request.prompt.system,
            user=request.prompt.user,
            skill_chars=request.prompt.skill_chars,
            sample=request.sample,
            temperature=request.temperature,
            max_tokens=request.max_tokens,
            params=request.params,
            history=request.history,
            tools=request.tools,
            install=request.install_digest if request.install is not None else "",
        )


def _encode(document: Any) -> str:
    # ASCII JSON: a model's lone surrogate survives, where execnet's UTF-8 strings would fail.
    return json.dumps(document, ensure_ascii=True)


class ReplyRelay:
    """On the xdist controller: answers each worker's requests with the session's `Replies`,
    each on a thread of its own (a request may wait minutes for its model)."""

    def __init__(
        self,
        replies: Replies,
        settings: Settings,
        skills: Callable[[], dict[str, Skill]],
        tools: Callable[[], list[tuple[Tool, ...]]],
    ) -> None:
        self.replies = replies
        self.settings = settings
        self._skills = skills  # by content hash
        self._tools = tools  # the tool sets an agent loop of this session offers
        self._channels: list[Any] = []  # kept: execnet holds channels weakly

    def serve(self, node: Any) -> None:
        """Give xdist worker `node` a channel to this process, in its `workerinput`."""
        serialize_sends(node.gateway)
        channel = node.gateway.newchannel()
        self._channels.append(channel)
        node.workerinput["upskill_replies"] = channel
        asks = threading.BoundedSemaphore(_MOST_ASKS)
        channel.setcallback(lambda message: self._received(channel, asks, message), endmarker=None)

    def _received(self, channel: Any, asks: threading.BoundedSemaphore, message: Any) -> None:
        if message is None:  # the worker went away
            return
        if not (isinstance(message, tuple) and len(message) == 2):
            return  # not ours: nobody waits for an answer
        ask, text = message
        asks.acquire()  # a worker that floods the controller waits: its channel reads no more
        threading.Thread(
            target=self._answer, args=(channel, asks, ask, text), name="upskill-relay", daemon=True
        ).start()

    def _answer(self, channel: Any, asks: threading.BoundedSemaphore, ask: Any, text: Any) -> None:
        try:
            if not isinstance(text, str) or len(text) > _MAX_MESSAGE:
                raise SampleError("generate", "a worker sent a request that is not one")
            reply = self.replies.reply(self._request(text))
            document = _REPLY.dump_python(reply, mode="json")
            answer: tuple[Any, ...] = ("reply", _encode(document), _transcript(reply))
        except UpskillIssue as issue:
            answer = ("issue", issue.outcome, issue.stage, issue.reason)
        except Exception as exc:  # a bug of the controller's: still this sample's error, one line
            answer = ("issue", "error", "generate", f"pytest-upskill failed: {exc!r}"[:2000])
        finally:
            asks.release()
        with contextlib.suppress(OSError, ValueError):  # the worker is gone
            channel.send((ask, *answer))

    def _request(self, text: str) -> Request:
        try:
            wire = WireRequest.model_validate(json.loads(text))
        except (ValueError, ValidationError) as exc:
            problem = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            raise SampleError(
                "generate", f"a worker sent a request that is not valid: {problem[:200]}"
            ) from None
        settings = self.settings
        spec = next((m for m in settings.models if m.label == wire.model), None)
        if spec is None:
            raise SampleError("generate", f"the controller has no model {wire.model!r}")
        # What the session's settings decide is the controller's to say, not a worker's.
        temperature = settings.temperature if spec.takes_temperature else None
        if (
            wire.sample >= settings.samples
            or wire.max_tokens != settings.max_tokens
            or wire.temperature != temperature
            or wire.params != settings.model_params
            or (wire.tools and wire.tools not in self._tools())
        ):
            raise SampleError(
                "generate", "a worker asked with settings of its own: give it the controller's"
            )
        install = None
        if wire.install:
            install = self._skills().get(wire.install)
            if install is None:
                raise SampleError(
                    "generate",
                    f"the controller has no skill with hash {wire.install[:12]} to install for "
                    f"{wire.model}: give it the same skills as its workers (--upskill-skill)",
                )
        return Request(
            spec=spec,
            prompt=Prompt(wire.system, wire.user, wire.skill_chars),
            task=None,  # asked for by its prompt: only the oracle reads the task, in the worker
            sample=wire.sample,
            temperature=wire.temperature,
            max_tokens=wire.max_tokens,
            params=wire.params,
            history=wire.history,
            tools=wire.tools,
            install=install,
            install_digest=wire.install,
        )


class _Waiter:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.answer: tuple[Any, ...] = ()


class ControllerLink:
    """On an xdist worker: asks the controller for replies, from any thread."""

    def __init__(self, channel: Any, folder: Path) -> None:
        serialize_sends(channel.gateway)
        self._channel = channel
        self._folder = folder  # where the agent CLIs' transcripts the controller sends go
        self._ids = itertools.count()
        self._waiting: dict[int, _Waiter] = {}
        self._lock = threading.Lock()
        self._closed = False
        channel.setcallback(self._received, endmarker=None)

    def ask(self, request: Request) -> Reply:
        waiter = _Waiter()
        with self._lock:
            if self._closed:
                raise SampleError("generate", "the xdist controller is gone: no reply to ask for")
            ask = next(self._ids)
            self._waiting[ask] = waiter
        try:
            self._channel.send((ask, _encode(WireRequest.of(request).model_dump(mode="json"))))
            # No deadline of its own: the controller's requests have theirs (they may queue
            # behind every worker's), and the channel's end wakes it.
            waiter.done.wait()
        except (OSError, ValueError):
            raise SampleError("generate", "the xdist controller is gone: no reply") from None
        finally:
            with self._lock:
                self._waiting.pop(ask, None)
        return _answered(waiter.answer, self._folder)

    def _received(self, message: Any) -> None:
        with self._lock:
            if message is None:  # the channel closed: nothing more will come
                self._closed = True
                woken, self._waiting = list(self._waiting.values()), {}
            else:
                waiter = self._waiting.get(message[0])
                woken = [waiter] if waiter is not None else []
                for waiter in woken:
                    waiter.answer = tuple(message[1:])
        for waiter in woken:
            waiter.done.set()


def serialize_sends(gateway: Any) -> None:
    """One message at a time on `gateway`: execnet writes a socket gateway's messages with no
    lock, and the relay sends from many threads beside xdist's own, whose messages would
    interleave (a `--tx socket=` session then hangs)."""
    if getattr(gateway, "_upskill_serialized", False):
        return
    send, lock = gateway._send, threading.Lock()

    def serialized(*args: Any, **kwargs: Any) -> None:
        with lock:
            send(*args, **kwargs)

    gateway._send = serialized
    gateway._upskill_serialized = True


def _transcript(reply: Reply) -> str:
    """An agent CLI's events, whose file is on this machine: the worker keeps them itself."""
    if not reply.transcript:
        return ""
    try:
        with open(reply.transcript, encoding="utf-8", errors="replace") as events:
            return events.read(_MAX_TRANSCRIPT)
    except OSError:
        return ""


def _answered(answer: tuple[Any, ...], folder: Path) -> Reply:
    if not answer:
        raise SampleError("generate", "the xdist controller went away before it answered")
    if answer[0] == "reply":
        reply = _REPLY.validate_python(json.loads(answer[1]))
        events = answer[2] if len(answer) > 2 and isinstance(answer[2], str) else ""
        if not events:
            return dataclasses.replace(reply, transcript="")  # a path on the controller
        folder.mkdir(parents=True, exist_ok=True)
        handle, path = tempfile.mkstemp(prefix="transcript-", suffix=".jsonl", dir=folder)
        with os.fdopen(handle, "w", encoding="utf-8", errors="replace") as kept:
            kept.write(events)
        return dataclasses.replace(reply, transcript=path)
    _, outcome, stage, reason = answer
    raise _ISSUES[outcome](stage, reason)
