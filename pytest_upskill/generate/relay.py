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
import itertools
import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from ..errors import SampleError, SampleFailed, SampleSkipped, UpskillIssue
from .prompt import Prompt
from .providers import Message, Reply, Request, Tool

if TYPE_CHECKING:
    from ..config import ModelSpec
    from ..skill import Skill
    from .replies import Replies

__all__ = ["ControllerLink", "ReplyRelay", "WireRequest"]

# The longest a worker waits for the controller's answer (the model's retries included).
WAIT_S = 3600.0
# The most text one message may carry: a conversation with its files, or a reply.
_MAX_MESSAGE = 64 << 20

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
        models: Callable[[], tuple[ModelSpec, ...]],
        skills: Callable[[], dict[str, Skill]],
    ) -> None:
        self.replies = replies
        self._models = models
        self._skills = skills  # by content hash
        self._channels: list[Any] = []  # kept: execnet holds channels weakly

    def serve(self, node: Any) -> None:
        """Give xdist worker `node` a channel to this process, in its `workerinput`."""
        channel = node.gateway.newchannel()
        self._channels.append(channel)
        node.workerinput["upskill_replies"] = channel
        channel.setcallback(lambda message: self._received(channel, message), endmarker=None)

    def _received(self, channel: Any, message: Any) -> None:
        if message is None:  # the worker went away
            return
        if not (isinstance(message, tuple) and len(message) == 2):
            return  # not ours: nobody waits for an answer
        ask, text = message
        threading.Thread(
            target=self._answer, args=(channel, ask, text), name="upskill-relay", daemon=True
        ).start()

    def _answer(self, channel: Any, ask: Any, text: Any) -> None:
        try:
            if not isinstance(text, str) or len(text) > _MAX_MESSAGE:
                raise SampleError("generate", "a worker sent a request that is not one")
            reply = self.replies.reply(self._request(text))
            answer: tuple[Any, ...] = ("reply", _encode(_REPLY.dump_python(reply, mode="json")))
        except UpskillIssue as issue:
            answer = ("issue", issue.outcome, issue.stage, issue.reason)
        except Exception as exc:  # a bug of the controller's: still this sample's error, one line
            answer = ("issue", "error", "generate", f"pytest-upskill failed: {exc!r}"[:2000])
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
        spec = next((m for m in self._models() if m.label == wire.model), None)
        if spec is None:
            raise SampleError("generate", f"the controller has no model {wire.model!r}")
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

    def __init__(self, channel: Any) -> None:
        self._channel = channel
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
            if not waiter.done.wait(WAIT_S):
                raise SampleError(
                    "generate", f"waited {WAIT_S:g} s for the xdist controller's reply"
                )
        except (OSError, ValueError):
            raise SampleError("generate", "the xdist controller is gone: no reply") from None
        finally:
            with self._lock:
                self._waiting.pop(ask, None)
        return _answered(waiter.answer)

    def _received(self, message: Any) -> None:
        with self._lock:
            if message is None:  # the channel closed: nothing more will come
                self._closed = True
                waiting, self._waiting = self._waiting, {}
            else:
                waiter = self._waiting.get(message[0])
                waiting = {0: waiter} if waiter is not None else {}
                if waiter is not None:
                    waiter.answer = tuple(message[1:])
        for waiter in waiting.values():
            waiter.done.set()


def _answered(answer: tuple[Any, ...]) -> Reply:
    if not answer:
        raise SampleError("generate", "the xdist controller went away before it answered")
    if answer[0] == "reply":
        return _REPLY.validate_python(json.loads(answer[1]))
    _, outcome, stage, reason = answer
    raise _ISSUES[outcome](stage, reason)
