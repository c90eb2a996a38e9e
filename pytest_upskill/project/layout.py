"""The kernel-builder project layout and its `build.toml` schema."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import SampleFailed

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "BuildToml",
    "KernelTable",
    "Project",
    "legacy_warnings",
    "load_project",
    "write_project",
]


def _kebab(name: str) -> str:
    return name.replace("_", "-")


class _Table(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=_kebab, populate_by_name=True)


class CudaGeneral(_Table):
    minver: str | None = None
    maxver: str | None = None
    kernel_depends: list[str] | None = None
    python_depends: list[str] | None = None
    # Older files (and the kernel skills that taught them) listed capabilities here.
    capabilities: list[str] | None = None


class HubTable(_Table):
    repo_id: str | None = None
    branch: str | None = None


class GeneralTable(_Table):
    name: str = Field(min_length=1)
    version: int | None = None
    edition: int | None = None
    license: str | None = None
    upstream: str | None = None
    source: str | None = None
    backends: list[str] | None = None
    cuda: CudaGeneral | None = None
    hub: HubTable | None = None
    kernel_depends: list[str] | None = None
    python_depends: list[str] | None = None
    neuron: dict[str, Any] | None = None
    tpu: dict[str, Any] | None = None
    xpu: dict[str, Any] | None = None
    # Editions 1 and 2.
    universal: bool | None = None
    cuda_minver: str | None = None
    cuda_maxver: str | None = None


class TorchTable(_Table):
    src: list[str] = []
    include: list[str] | None = None
    pyext: list[str] | None = None
    minver: str | None = None
    maxver: str | None = None
    stable_abi: str | dict[str, str] | None = None
    cxx_flags: list[str] | None = None
    universal: bool | None = None  # edition 1


class KernelTable(_Table):
    """One `[kernel.NAME]`: the union of every backend's keys, as kernel-builder reads them."""

    backend: str = "cuda"
    src: list[str]
    depends: list[str] = []
    include: list[str] | None = None
    cuda_capabilities: list[str] | None = None
    cuda_flags: list[str] | None = None
    cuda_minver: str | None = None
    cxx_flags: list[str] | None = None
    rocm_archs: list[str] | None = None
    hip_flags: list[str] | None = None
    sycl_flags: list[str] | None = None
    language: str | None = None  # edition 1


class BuildToml(_Table):
    general: GeneralTable
    torch: TorchTable | None = None
    torch_noarch: dict[str, Any] | None = None
    tvm_ffi: dict[str, Any] | None = None
    kernel: dict[str, KernelTable] = {}


CURRENT_EDITION = 5


def legacy_warnings(config: BuildToml) -> list[str]:
    """What an older build.toml does that kernel-builder's current edition no longer reads."""
    warnings = []
    edition = config.general.edition
    if edition is None:
        warnings.append(
            f"build.toml has no [general] edition: read as an older file "
            f"(kernel-builder's current edition is {CURRENT_EDITION})"
        )
    elif edition < CURRENT_EDITION:
        warnings.append(
            f"build.toml is edition {edition}; kernel-builder's current edition is "
            f"{CURRENT_EDITION}"
        )
    if config.general.cuda and config.general.cuda.capabilities is not None:
        warnings.append(
            "[general.cuda] capabilities is an older form: kernel-builder reads "
            "cuda-capabilities in each [kernel.NAME]"
        )
    return warnings


@dataclass(frozen=True)
class Project:
    """A project extracted from a reply and written to its sample's directory."""

    root: Path
    name: str
    files: dict[str, str]
    config: BuildToml
    warnings: tuple[str, ...] = ()

    def build_toml(self) -> dict[str, Any]:
        """build.toml as parsed TOML: its keys as written (`cuda_flags` or `cuda-flags`), and the
        free-form tables the schema leaves unchecked."""
        data: dict[str, Any] = tomllib.loads(self.files["build.toml"])  # load_project parsed it
        return data

    def kernels_for(self, backend: str) -> dict[str, KernelTable]:
        return {name: k for name, k in self.config.kernel.items() if k.backend == backend}

    def cuda_capabilities(self) -> list[str]:
        """The capabilities build.toml asks for (its cuda kernels', else the older
        `[general.cuda]` list); empty when it leaves the choice to the task."""
        listed: list[str] = []
        for kernel in self.kernels_for("cuda").values():
            listed += kernel.cuda_capabilities or []
        if not listed and self.config.general.cuda:
            listed = self.config.general.cuda.capabilities or []
        return list(dict.fromkeys(listed))


def _strip_common_root(files: dict[str, str]) -> dict[str, str]:
    """Models often nest the whole project in one folder (`my_kernel/build.toml`): unnest it."""
    if "build.toml" in files:
        return files
    roots = {path[: -len("build.toml")] for path in files if path.endswith("/build.toml")}
    if len(roots) == 1:
        (prefix,) = roots
        if all(path.startswith(prefix) for path in files):
            return {path[len(prefix) :]: content for path, content in files.items()}
    return files


def write_project(files: dict[str, str], root: Path) -> dict[str, str]:
    """Write `files` under `root` (which must not exist yet); return them as written."""
    files = _strip_common_root(files)
    root.mkdir(parents=True)
    resolved_root = root.resolve()
    for relative, content in files.items():
        target = (root / relative).resolve()
        if not target.is_relative_to(resolved_root):  # extract already refused such paths
            raise SampleFailed("extract", f"path {relative!r} leaves the project")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # A new regular file, never through a link and never over anything already there.
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
            with os.fdopen(os.open(target, flags, 0o644), "w", encoding="utf-8") as stream:
                stream.write(content)
        except (OSError, UnicodeEncodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise SampleFailed("extract", f"{relative} cannot be written: {reason}") from None
    return files


def load_project(root: Path, files: dict[str, str], name: str) -> Project:
    """Validate the layout of the project written at `root` for the task's package `name`."""
    if "build.toml" not in files:
        raise SampleFailed("extract", "the project has no build.toml at its root")
    try:
        data: dict[str, Any] = tomllib.loads(files["build.toml"])
    except tomllib.TOMLDecodeError as exc:
        raise SampleFailed("extract", f"build.toml is not valid TOML: {exc}") from None
    try:
        config = BuildToml.model_validate(data)
    except ValidationError as exc:
        raise SampleFailed("extract", f"build.toml: {_first_error(exc)}") from None
    package_init = f"torch-ext/{name}/__init__.py"
    if package_init not in files:
        raise SampleFailed(
            "extract", f"the project has no {package_init}: the package the test imports"
        )
    sources = list(config.torch.src if config.torch else [])
    for kernel in config.kernel.values():
        sources += kernel.src
    missing = [src for src in sources if src not in files]
    if missing:
        raise SampleFailed(
            "extract",
            f"build.toml names source files the reply does not hold: {', '.join(missing)}",
        )
    return Project(
        root=root,
        name=name,
        files=files,
        config=config,
        warnings=tuple(legacy_warnings(config)),
    )


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"unknown key '{where}'"
    if error["type"] == "missing":
        return f"'{where}' is required"
    return f"'{where}': {error['msg']}"
