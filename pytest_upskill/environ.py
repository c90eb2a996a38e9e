"""The environment generated code is built and run with: an allow-list, kept in this one place.

Anything not named here stays with the pytest process: a variable added to CI tomorrow (a
webhook URL, a proxy with credentials, a job token) never reaches a build or a kernel.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping

__all__ = ["passed_environ", "withheld_secrets"]

# Variables a build or a test needs to behave as it does outside: locale, Python's own, the
# toolchain's and the GPU's settings, thread counts.
_PASSED = frozenset(
    {
        "PATH",
        "LANG",
        "LANGUAGE",
        "TZ",
        "LD_LIBRARY_PATH",
        "MAX_JOBS",
        "CC",
        "CXX",
        "PYTHONPATH",
        "PYTHONHASHSEED",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONUNBUFFERED",
        "PYTHONWARNINGS",
        "PYTHONFAULTHANDLER",
        "PYTHONIOENCODING",
        "PYTHONUTF8",
        "PYTHONSAFEPATH",
        "VIRTUAL_ENV",
        "PYTEST_ADDOPTS",
        "PYTEST_PLUGINS",
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD",
        "COLUMNS",
    }
)
_PASSED_FAMILY = re.compile(r"(LC|CUDA|NVIDIA|TORCH|PYTORCH|OMP|MKL|KMP|OPENBLAS|TRITON)_\w+")
# Even a passed family never carries something named like a credential.
_SECRET_NAME = re.compile(
    r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH|COOKIE|SESSION|DSN|JWT", re.IGNORECASE
)
_SHORTEST_SECRET = 8  # shorter values ("1", "true") would redact ordinary words
_URL_CREDENTIALS = re.compile(r"://[^/@\s]+@")
_LONG_TOKEN = 20
_CHARACTER_CLASSES = (str.islower, str.isupper, str.isdigit)


def _snapshot() -> dict[str, str]:
    """This process's environment, read whole while another thread may change it (pytest sets
    and deletes PYTEST_CURRENT_TEST around every test while replies arrive in threads)."""
    while True:
        try:
            return dict(os.environ)
        except (KeyError, RuntimeError):  # a variable went, or came, while it was read
            continue


def _passes(name: str, extra: Iterable[str]) -> bool:
    if name in extra:
        return True
    if _SECRET_NAME.search(name):
        return False
    return name in _PASSED or _PASSED_FAMILY.fullmatch(name) is not None


def passed_environ(
    extra: Iterable[str] = (), environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The variables of `environ` (default: this process's) that generated code may see: the
    allow-list, plus the names in `extra` (`--upskill-pass-env`)."""
    source = _snapshot() if environ is None else environ
    extra = frozenset(extra)
    return {name: value for name, value in source.items() if _passes(name, extra)}


def _looks_secret(name: str, value: str) -> bool:
    if len(value) < _SHORTEST_SECRET or value.startswith("/"):  # paths: HOME, PWD, KUBECONFIG
        return False
    if _SECRET_NAME.search(name) or _URL_CREDENTIALS.search(value):
        return True
    # A long random-looking word (an unnamed key); model names and settings are not.
    classes = sum(any(test(char) for char in value) for test in _CHARACTER_CLASSES)
    return len(value) >= _LONG_TOKEN and classes == 3 and not any(c.isspace() for c in value)


def withheld_secrets(
    extra: Iterable[str] = (), environ: Mapping[str, str] | None = None
) -> list[str]:
    """Values this process holds that generated code was not given and that look like secrets
    (by the variable's name, credentials in a URL, or a long random word), longest first:
    they are redacted from everything written. Other values (paths, model names, settings)
    stay: redacting them would garble every report."""
    source = _snapshot() if environ is None else environ
    extra = frozenset(extra)
    values = {
        value
        for name, value in source.items()
        if not _passes(name, extra) and _looks_secret(name, value)
    }
    return sorted(values, key=len, reverse=True)
