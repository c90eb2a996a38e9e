"""Stage `policy`, build.toml: the values that reach build.ninja and the compiler command
lines (no control characters, paths, capabilities and kernel names of a strict shape) and the
compiler flags (an allow-list; no redefining the harness's own macros).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..errors import SampleFailed
from .layout import Project

__all__ = ["control_characters", "cuda_flags", "cxx_flags", "harness_defines", "shapes"]

_SHOWN = 60  # characters of a refused value shown in a reason

# A line break in a value that reaches build.ninja starts a new ninja statement (a rule that runs
# anything); Cc covers NUL, tab, CR, LF, ESC, DEL and the C1 controls (U+0085, NEL, among them).
_CONTROL_CATEGORIES = ("Cc", "Zl", "Zp")
# Shapes of the build.toml values that reach build.ninja and the compiler command lines. ASCII
# only: `\d` and `\w` would take any script's digits and letters.
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9._+-]+")
_CAPABILITY = re.compile(r"[0-9]{1,2}\.[0-9][af]?")
_KERNEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")  # a TOML key shown without quotes
_PATH = (
    "is not a relative path inside the project (segments of A-Z a-z 0-9 . _ + - joined by /; "
    "none empty, . or ..)"
)
_CAPABILITY_SHAPE = "is not a CUDA capability such as '8.0', '9.0a' or '10.0f'"
_FLAG_KEYS = {"torch": ("cxx-flags",), "kernel": ("cxx-flags", "cuda-flags")}
# Macros the harness defines on every compile line: redefined or undefined, they change the op
# namespace, the C++ ABI or which backend's code is compiled.
_HARNESS_DEFINES = frozenset(
    {"TORCH_EXTENSION_NAME", "_GLIBCXX_USE_CXX11_ABI", "CPU_KERNEL", "CUDA_KERNEL"}
)
# -D/-U of g++ and nvcc (nvcc's long forms too): the macro attached, or the next argument.
_MACRO_FLAG = re.compile(r"(--?(?:un)?define-macro=?|-[DU])(.*)", re.S)
_COMPILER_OPTIONS = ("-Xcompiler", "--compiler-options")
_Where = tuple[str | int, ...]  # keys and indices from build.toml's root to a value

# Flags a kernel author needs; anything else (plugins, output paths, include paths outside the
# project, response files, other targets) is refused by name.
_CXX_FLAG = re.compile(
    r"-O[0-3sz]?|-Ofast|-g[0-3]?|-w|-pthread|-D[A-Za-z_]\w*(=[\w.+-]*)?|-U[A-Za-z_]\w*"
    r"|-W(no-)?(error=)?[a-z][\w+-]*"
    r"|-std=(c|gnu)\+\+\w+"
    r"|-f(no-)?(fast-math|unroll-loops|openmp|strict-aliasing|math-errno|finite-math-only"
    r"|trapping-math|signed-zeros|tree-vectorize|omit-frame-pointer|inline-functions"
    r"|exceptions|rtti|PIC|pic|permissive|reciprocal-math|associative-math)"
    r"|-fvisibility=(hidden|default)|-f(template|constexpr)-(depth|steps|loop-limit)=\d+"
    r"|-m(arch|tune|cpu)=[\w.-]+|-m(no-)?(avx[\w-]*|sse[\w.]*|fma|f16c|bmi2?|popcnt|amx-\w+)",
    re.ASCII,  # `\w` and `\d` would take any script's letters and digits
)
_PTXAS_OPTION = re.compile(
    r"-v|--verbose|-O[0-3]|-warn-spills|--warn-on-spills|-warn-lmem-usage"
    r"|--warn-on-local-memory-usage|-warn-double-usage|--warn-on-double-precision-use"
    r"|-dlcm=c[ag]|-dscm=(wt|cg)|--allow-expensive-optimizations(=(true|false))?"
    r"|-?-maxrregcount=\d+",
    re.ASCII,
)
_CUDA_FLAG = re.compile(
    r"-O[0-3]|-g|-G|-lineinfo|--generate-line-info|-D[A-Za-z_]\w*(=[\w.+-]*)?|-U[A-Za-z_]\w*"
    r"|-?-use[_-]fast[_-]math|-?-expt-relaxed-constexpr|-?-expt-extended-lambda"
    r"|-?-extended-lambda|-?-maxrregcount=\d+|--(ftz|prec-div|prec-sqrt|fmad)=(true|false)"
    r"|-?-std=c\+\+\w+|-?-diag-suppress=[\w,]+|--display-error-number|-res-usage"
    r"|--resource-usage|-W(no-)?[a-z][\w-]*|-Werror=[\w,-]+|--split-compile=\d+",
    re.ASCII,
)
_CUDA_TARGET = re.compile(r"-gencode|--generate-code|-arch|--gpu-architecture|-code|--gpu-code")
_TAKES_VALUE = {"-Xptxas", "--ptxas-options", "-Xcompiler", "--compiler-options"}


def cxx_flags(project: Project, backend: str) -> dict[str, list[str]]:
    """The checked `cxx-flags` of each source that has some, by path."""
    flags: dict[str, list[str]] = {}
    torch = project.config.torch
    if torch is not None and torch.cxx_flags:
        checked = _checked(torch.cxx_flags, "torch cxx-flags", cuda=False)
        flags.update((src, checked) for src in torch.src)
    for name, kernel in project.kernels_for(backend).items():
        if kernel.cxx_flags:
            checked = _checked(kernel.cxx_flags, f"kernel.{name} cxx-flags", cuda=False)
            flags.update((src, checked) for src in kernel.src if not src.endswith(".cu"))
    return flags


def cuda_flags(project: Project, backend: str) -> dict[str, list[str]]:
    """The checked `cuda-flags` of each CUDA source that has some, by path."""
    flags: dict[str, list[str]] = {}
    if backend != "cuda":
        return flags
    for name, kernel in project.kernels_for(backend).items():
        if kernel.cuda_flags:
            checked = _checked(kernel.cuda_flags, f"kernel.{name} cuda-flags", cuda=True)
            flags.update((src, checked) for src in kernel.src if src.endswith(".cu"))
    return flags


def _checked(flags: list[str], where: str, *, cuda: bool) -> list[str]:
    """`flags` with two-argument forms joined (`-Xptxas -v` -> `-Xptxas=-v`), each allowed."""
    joined: list[str] = []
    items = iter(flags)
    for flag in items:
        if flag in _TAKES_VALUE and cuda:
            flag = f"{flag}={next(items, '')}"
        joined.append(flag)
    for flag in joined:
        if not (_allowed_cuda(flag) if cuda else _CXX_FLAG.fullmatch(flag)):
            hint = (
                "set the targets with cuda-capabilities"
                if cuda and _CUDA_TARGET.match(flag)
                else "allowed: optimization levels, -D/-U defines, warnings, fast math, "
                "line info, ptxas verbosity and a few code-generation switches"
            )
            raise SampleFailed(
                "policy", f"build.toml {where}: {flag!r} is not an allowed flag ({hint})"
            )
    return joined


def control_characters(data: dict[str, Any]) -> Iterator[str]:
    """Keys and string values of build.toml that hold a control character or line break."""
    for where, text, is_key in _strings(data, ()):
        found = next((c for c in text if unicodedata.category(c) in _CONTROL_CATEGORIES), None)
        if found is not None:
            key = f"{_key(where)} key" if is_key else _key(where)
            yield f"{key} holds a control character (U+{ord(found):04X})"


def _strings(value: object, where: _Where) -> Iterator[tuple[_Where, str, bool]]:
    """Each key and string value under `value`: (where it is, its text, whether it is a key)."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*where, key), key, True
            yield from _strings(item, (*where, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*where, index))
    elif isinstance(value, str):
        yield where, value, False


def shapes(data: dict[str, Any]) -> Iterator[str]:
    """Kernel names, paths and capabilities not of the shape the build puts on a command line."""
    kernels = data.get("kernel")
    for name in kernels if isinstance(kernels, dict) else ():
        if not _KERNEL_NAME.fullmatch(name):
            yield (
                f"[kernel.NAME] {_shown(name)} is not a kernel name (letters, digits, '_', '.' "
                "and '-', starting with a letter, digit or '_')"
            )
    for kind, where, table in _tables(data):
        for key, values in table.items():
            # The schema takes `cuda_capabilities` as well as `cuda-capabilities`.
            shape = _SHAPES.get((kind, key.replace("_", "-")))
            if shape is None or not isinstance(values, list):
                continue
            check, problem = shape
            for index, value in enumerate(values):
                if isinstance(value, str) and not check(value):
                    yield f"{_key((*where, key, index))} {_shown(value)} {problem}"


def _is_path(value: str) -> bool:
    # build.ninja and the include paths put these under the build's copy of the project, whose
    # root itself (".") and folders written with a final "/" models use too.
    return value == "." or all(
        _PATH_SEGMENT.fullmatch(segment) and segment not in (".", "..")
        for segment in value.removesuffix("/").split("/")
    )


def _is_capability(value: str) -> bool:
    return _CAPABILITY.fullmatch(value) is not None


# (table, key) -> (check, what a value that fails it is); keys as kernel-builder spells them.
_SHAPES: dict[tuple[str, str], tuple[Callable[[str], bool], str]] = {
    ("torch", "include"): (_is_path, _PATH),
    ("torch", "src"): (_is_path, _PATH),
    ("kernel", "include"): (_is_path, _PATH),
    ("kernel", "src"): (_is_path, _PATH),
    ("kernel", "depends"): (_is_path, _PATH),
    ("kernel", "cuda-capabilities"): (_is_capability, _CAPABILITY_SHAPE),
    ("general.cuda", "capabilities"): (_is_capability, _CAPABILITY_SHAPE),
}


def _tables(data: dict[str, Any]) -> Iterator[tuple[str, tuple[str, ...], dict[str, Any]]]:
    """The tables whose values reach a command line: (kind, where, table)."""
    general = data.get("general")
    cuda = general.get("cuda") if isinstance(general, dict) else None
    if isinstance(cuda, dict):
        yield "general.cuda", ("general", "cuda"), cuda
    torch = data.get("torch")
    if isinstance(torch, dict):
        yield "torch", ("torch",), torch
    kernels = data.get("kernel")
    for name, table in kernels.items() if isinstance(kernels, dict) else ():
        if isinstance(table, dict):
            yield "kernel", ("kernel", name), table


def harness_defines(data: dict[str, Any]) -> Iterator[str]:
    """Compiler flags that define or undefine a macro the harness sets."""
    # Every kernel's flags, whatever its backend: none of them may take the harness's macros.
    for kind, where, table in _tables(data):
        for key, flags in table.items():
            if key.replace("_", "-") not in _FLAG_KEYS.get(kind, ()) or not isinstance(flags, list):
                continue
            found = _overriding_flag([flag for flag in flags if isinstance(flag, str)])
            if found is not None:
                flag = _clipped(found)
                yield f"{_key((*where, key))}: {flag} overrides a define the harness sets"


def _overriding_flag(flags: Sequence[str]) -> str | None:
    """The first flag, with its argument, that defines or undefines a harness macro."""
    index = 0
    while index < len(flags):
        # Quotes reach the compiler as they are, but a shell between would strip them.
        flag = flags[index].strip(" \t\"'")
        following = flags[index + 1] if index + 1 < len(flags) else ""
        name, equals, value = flag.partition("=")
        width = 1
        if name in _COMPILER_OPTIONS:
            if not equals:  # `-Xcompiler -DX`, as _checked joins it
                value, width = following, 2
            # nvcc splits the value at commas, so `-D,NAME` is `-D NAME` to the host compiler.
            if _overriding_flag(value.split(",")) is not None:
                return " ".join(flags[index : index + width])
        elif name in ("-Xptxas", "--ptxas-options"):
            width = 1 if equals else 2  # ptxas options, not macros (the allow-list checks them)
        else:
            macro = _MACRO_FLAG.fullmatch(flag)
            if macro is not None:
                defined = macro.group(2)
                if not defined:  # `-D NAME`
                    defined, width = following, 2
                if defined.strip(" \t\"'").partition("=")[0].strip() in _HARNESS_DEFINES:
                    return " ".join(flags[index : index + width])
        index += width
    return None


def _key(where: _Where) -> str:
    """`[kernel.k] include[0]`: the table, then the key in it with its indices."""
    indexed = next((i for i, part in enumerate(where) if isinstance(part, int)), len(where))
    split = max(indexed - 1, 0)
    table = ".".join(_segment(part) for part in where[:split])
    key = "".join(
        f"[{part}]" if isinstance(part, int) else f".{_segment(part)}" for part in where[split:]
    ).removeprefix(".")
    return f"[{table}] {key}" if table else key


def _segment(part: str | int) -> str:
    text = str(part)
    return text if _BARE_KEY.fullmatch(text) else _shown(text)


def _shown(value: str) -> str:
    """`value` as a one-line Python literal of at most _SHOWN characters."""
    return _clipped(repr(value))


def _clipped(text: str) -> str:
    return text if len(text) <= _SHOWN else f"{text[: _SHOWN - 3]}..."


def _allowed_cuda(flag: str) -> bool:
    name, _, value = flag.partition("=")
    if name in ("-Xptxas", "--ptxas-options"):
        return bool(value) and all(_PTXAS_OPTION.fullmatch(v) for v in value.split(","))
    if name in ("-Xcompiler", "--compiler-options"):
        return bool(value) and all(_CXX_FLAG.fullmatch(v) for v in value.split(","))
    return _CUDA_FLAG.fullmatch(flag) is not None
