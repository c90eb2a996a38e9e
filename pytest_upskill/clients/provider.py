"""An agent CLI as a provider: a request in, the project its workspace holds at the end out.

Recording is of the CLI's traffic, not its result: a cassette holds each exchange through the
proxy, so a replay runs the real CLI again, answered by the recording, with no key and no
server. Within a session a run is made once: `generate.replies` keeps its reply, and under
xdist the controller makes every run (`generate.relay`).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from ..config import ModelSpec, Settings
from ..errors import SampleError, SampleSkipped
from ..generate.cassettes import Cassettes
from ..generate.providers import Reply, Request, Usage
from ..paths import write_json_atomically
from ..run.processes import memory_total_gib
from ..sanitize import each_string, redacted
from . import client_for
from .exchanges import Exchange
from .protocol import Client
from .run import AgentRun, Ran

__all__ = ["AGENT_CASSETTE_SCHEMA", "AgentProvider", "AgentSetup"]

AGENT_CASSETTE_SCHEMA = "pytest-upskill-agent-cassette/1"


class AgentCassette(BaseModel):
    """One agent run's traffic: validated where it enters, it may have been edited by hand."""

    schema_: Literal["pytest-upskill-agent-cassette/1"] = Field(alias="schema")
    client: str
    request: dict[str, object]
    exchanges: list[Exchange]


@dataclass(frozen=True)
class AgentSetup:
    """What every agent run of a session shares."""

    root: Path  # the session's folder for the CLIs' workspaces
    store: Cassettes
    settings: Settings


class AgentProvider:
    def __init__(self, spec: ModelSpec, setup: AgentSetup) -> None:
        self.spec = spec
        self.setup = setup
        self.client: Client = client_for(spec.client)

    def upstream(self) -> str:
        return (
            self.spec.base_url
            or os.environ.get(self.client.base_variable)
            or self.client.default_base_url
        )

    def missing_key(self) -> str | None:
        if self.client.credentials(os.environ) is None:
            return self.client.missing_key()
        return None

    def prepare(self) -> None:
        pass

    def check(self) -> tuple[str | None, str | None]:
        return None, None  # the CLI asks its server itself; a missing CLI skips its samples

    def close(self) -> None:
        pass

    def generate(self, request: Request) -> Reply:
        store, root = self.setup.store, self.setup.root
        path = store.path(request)
        program = self._program()  # a missing CLI skips, with or without a key
        recording = self._recording(path)
        if recording is None:
            if store.mode == "none":
                raise SampleError(
                    "generate",
                    f"{self.spec.label}: no recorded run ({path.name}) and --upskill-record=none: "
                    "record it with --upskill-record=new",
                )
            if self.missing_key() is not None:
                raise SampleError("generate", f"{self.spec.label}: {self.missing_key()}")
        ran = AgentRun(
            client=self.client,
            program=program,
            folder=root / path.stem,
            prompt=f"{request.prompt.system}\n\n{request.prompt.user}\n",
            model=self.spec.client_model,
            skill=request.install,
            upstream=self.upstream(),
            credentials=self.client.credentials(os.environ) or {},
            replay=recording.exchanges if recording is not None else None,
            seconds=self.setup.settings.max_sample_s or self.setup.settings.timeout_s,
            max_tokens=self.setup.settings.max_total_tokens,
            turns=self.setup.settings.turns if self.setup.settings.turns > 1 else None,
            pass_env=self.setup.settings.pass_env,
            memory_gib=self.setup.settings.memory_limit_gb or memory_total_gib() / 2 or 64,
            disk_bytes=int(self.setup.settings.disk_limit_gb * 2**30),
        ).run()
        if recording is None:
            self._save(path, request, ran)
        return _reply(ran, cached=recording is not None)

    def _program(self) -> str:
        from ..run.sandbox import mechanism

        program = shutil.which(self.client.program)
        if program is None:
            raise SampleSkipped(
                "generate",
                f"{self.client.name} is not installed ({self.client.program} is not on PATH): "
                f"{self.client.install}",
            )
        if mechanism() != "bubblewrap":
            raise SampleSkipped(
                "generate",
                f"{self.client.name} runs only in bubblewrap's sandbox, whose network reaches "
                "nothing but its model: install bubblewrap (apt-get install bubblewrap)",
            )
        return program

    def _recording(self, path: Path) -> AgentCassette | None:
        """The recording to replay: none where the mode asks again or there is none."""
        store = self.setup.store
        try:
            older = path.stat().st_mtime < store.since
            if store.mode in ("all", "off") and older:
                return None
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SampleError("generate", f"cassette {path} cannot be read: {exc}") from None
        try:
            return AgentCassette.model_validate_json(text)
        except ValidationError as exc:
            raise SampleError(
                "generate",
                f"cassette {path} is not a valid agent recording ({exc.errors()[0]['msg']}): "
                "delete it to record it again",
            ) from None

    def _save(self, path: Path, request: Request, ran: Ran) -> None:
        exchanges = [e.model_copy(update={"body": redacted(e.body)}) for e in ran.exchanges]
        document = AgentCassette.model_validate(
            {
                "schema": AGENT_CASSETTE_SCHEMA,
                "client": self.client.name,
                "request": each_string(request.fingerprint(), redacted),
                "exchanges": exchanges,
            }
        )
        write_json_atomically(path, document.model_dump(mode="json", by_alias=True))


def _reply(ran: Ran, cached: bool) -> Reply:
    notes = list(ran.notes)
    if ran.summary.error:
        notes.append(f"the CLI ended with an error: {ran.summary.error[:300]}")
    return Reply(
        text=ran.summary.text[:20_000],
        usage=Usage(ran.usage.input_tokens, ran.usage.output_tokens),
        latency_s=round(ran.seconds, 3),
        cached=cached,
        notes=tuple(notes),
        files=ran.files,
        reported_cost_usd=ran.summary.cost_usd,
        transcript=str(ran.transcript),
        limit_note=ran.limit,
    )
