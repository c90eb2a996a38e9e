"""The environment that generated code is built and run with: the user's, less its secrets."""

from __future__ import annotations

import os
import re

__all__ = ["scrubbed_environ"]

# Names that hold credentials: API keys, tokens, passwords, cloud and SDK settings.
_SECRET = re.compile(
    r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH|COOKIE|SESSION)"
    r"|^(ANTHROPIC|OPENAI|AWS|AZURE|GOOGLE|GCP|GCLOUD|HF|HUGGING_FACE|GITHUB|GH|GITLAB)_",
    re.IGNORECASE,
)


def scrubbed_environ(environ: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of `environ` (default: this process's) without any variable that may hold a secret."""
    source = os.environ if environ is None else environ
    return {name: value for name, value in source.items() if not _SECRET.search(name)}
