"""What the session header says about where generated code runs and what happens to replies."""

from __future__ import annotations

import os
import shutil
from typing import TYPE_CHECKING

from ..agent import agent_mode
from ..config import public_url

if TYPE_CHECKING:
    from ..config import ModelSpec, Settings
    from ..run.sandbox import Mechanism

__all__ = [
    "ISOLATION_WORDS",
    "NO_SANDBOX",
    "RECORD_WORDS",
    "agent_words",
    "loop_words",
    "sandbox_words",
    "temperature_zero_or_seed",
]

RECORD_WORDS = {
    "none": "replayed from cassettes only",
    "new": "replayed from cassettes, the missing ones recorded",
    "all": "asked again and recorded",
    "off": "asked for, not recorded",
}
ISOLATION_WORDS = {
    "bubblewrap": "builds and kernels run in a sandbox (bubblewrap, then {inner}): no network, "
    "no secrets, no other processes, reads only of the toolchain and your tests, writes only "
    "in each sample's own folder",
    "landlock": "builds and kernels run in a sandbox ({inner}; bubblewrap is missing or refused "
    "here, so other processes are hidden by Landlock alone): no network, no secrets, reads only "
    "of the toolchain and your tests, writes only in each sample's own folder",
    "process": "kernels load and run in a child process without secrets; sandbox off "
    "(--upskill-isolation=process): builds and kernels may read and write wherever you can",
    "off": "kernels load and run in this pytest process (--upskill-isolation=off): a crash in "
    "one ends the session",
}
NO_SANDBOX = (
    "--upskill-isolation=sandbox: neither bubblewrap nor Landlock works here; install "
    "bubblewrap (apt-get install bubblewrap) or pass --upskill-isolation=process to run "
    "generated code without a sandbox"
)


def sandbox_words(how: Mechanism) -> str:
    """The header's line for the sandbox in force."""
    from ..run.landlock import abi_version

    abi = abi_version()
    inner = f"Landlock ABI {abi}, seccomp" if abi else "seccomp; no Landlock on this kernel"
    return ISOLATION_WORDS[how].format(inner=inner)


def agent_words(spec: ModelSpec, how: Mechanism | None) -> str:
    """The header's line for an agent CLI: where it is, where its network reaches, or why its
    samples will skip."""
    from ..clients import client_for

    client = client_for(spec.client)
    program = shutil.which(client.program)
    if program is None:
        return f"{spec.label}: {client.program} is not on PATH: its samples skip ({client.install})"
    if how != "bubblewrap":
        return f"{spec.label}: needs bubblewrap for its sandbox: its samples skip"
    upstream = spec.base_url or os.environ.get(client.base_variable) or client.default_base_url
    return (
        f"{spec.label}: {program}, in a sandbox that writes only its workspace and reaches only "
        f"{public_url(upstream)} (through a proxy that holds the key)"
    )


def temperature_zero_or_seed(settings: Settings) -> bool:
    """Whether the samples of a test are likely to be one reply repeated."""
    repeated = settings.temperature == 0 or "seed" in settings.model_params
    return repeated and settings.samples > 1


def loop_words(settings: Settings) -> str:
    """The agent loop the session runs, in one line for the header."""
    modes = ", ".join(f"{m.label} {agent_mode(settings, m)}" for m in settings.models)
    limits = [
        f"{settings.max_total_tokens} tokens" if settings.max_total_tokens else "",
        f"{settings.max_sample_s:g} s" if settings.max_sample_s else "",
        f"${settings.max_cost_usd:g}" if settings.max_cost_usd else "",
    ]
    spend = f"; at most {', '.join(filter(None, limits))} a sample" if any(limits) else ""
    return (
        f"agent loop of up to {settings.turns} turns a sample, ending at the first pass "
        f"({modes}); skills {'disclosed' if settings.skill_mode == 'disclose' else 'preloaded'}"
        f"{spend}"
    )
