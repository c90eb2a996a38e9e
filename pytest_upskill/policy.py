"""Stage `policy`: rules a project must keep before it is built.

Binding rules are kernel-builder's (ops registered through TORCH_LIBRARY_EXPAND with the
build's own namespace, no Python bindings compiled in); `binding="any"` lifts them. Compiler
flags from build.toml always pass an allow-list: they reach nvcc and g++ on the user's machine.
Task rules come from the marker: a CUDA task must launch a `__global__` function of its own,
and no source may hold a pattern of `forbid` (an ATen op doing the work, a second stream).
"""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Iterator

from .config import Binding
from .errors import SampleFailed
from .project import Project
from .task import Task

__all__ = ["check_project", "check_task_rules", "cuda_flags", "cxx_flags", "forbidden"]

_C_FAMILY = (".c", ".cc", ".cpp", ".cxx", ".cu", ".cuh", ".h", ".hh", ".hpp", ".hxx", ".inl", ".mm")
_TOKENS = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|//[^\n]*|/\*.*?\*/', re.S)
_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*[<"]([^>"\n]+)[>"]', re.M)
# A macro's definition is not a use: kernel-builder's own registration.h defines these.
_DEFINE = re.compile(r"^[ \t]*#[ \t]*define\b(?:\\\n|[^\n])*", re.M)
_LIBRARY_MACRO = re.compile(r"\b(TORCH_LIBRARY(?:_IMPL|_FRAGMENT)?(?:_EXPAND)?)\s*\(\s*(\w*)")
_ESCAPE = "or pass --upskill-binding=any to build it anyway"
# Attributes between `__global__` and the kernel's name, whose parentheses would hide it.
_KERNEL_ATTRIBUTE = re.compile(r"\b__(launch_bounds|cluster_dims|maxnreg)__\s*\([^)]*\)")
_GLOBAL = re.compile(r"\b__global__\b[^;{}()]*?\b(\w+)\s*\(")
_LAUNCH = re.compile(
    r"<<<|\b(cudaLaunchKernel\w*|cudaLaunchCooperativeKernel\w*|cuLaunchKernel\w*)\s*\("
)
_MAX_NAMED = 5  # violations named in one reason

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
    r"|-m(arch|tune|cpu)=[\w.-]+|-m(no-)?(avx[\w-]*|sse[\w.]*|fma|f16c|bmi2?|popcnt|amx-\w+)"
)
_PTXAS_OPTION = re.compile(
    r"-v|--verbose|-O[0-3]|-warn-spills|--warn-on-spills|-warn-lmem-usage"
    r"|--warn-on-local-memory-usage|-warn-double-usage|--warn-on-double-precision-use"
    r"|-dlcm=c[ag]|-dscm=(wt|cg)|--allow-expensive-optimizations(=(true|false))?"
    r"|-?-maxrregcount=\d+"
)
_CUDA_FLAG = re.compile(
    r"-O[0-3]|-g|-G|-lineinfo|--generate-line-info|-D[A-Za-z_]\w*(=[\w.+-]*)?|-U[A-Za-z_]\w*"
    r"|-?-use[_-]fast[_-]math|-?-expt-relaxed-constexpr|-?-expt-extended-lambda"
    r"|-?-extended-lambda|-?-maxrregcount=\d+|--(ftz|prec-div|prec-sqrt|fmad)=(true|false)"
    r"|-?-std=c\+\+\w+|-?-diag-suppress=[\w,]+|--display-error-number|-res-usage"
    r"|--resource-usage|-W(no-)?[a-z][\w-]*|-Werror=[\w,-]+|--split-compile=\d+"
)
_CUDA_TARGET = re.compile(r"-gencode|--generate-code|-arch|--gpu-architecture|-code|--gpu-code")
_TAKES_VALUE = {"-Xptxas", "--ptxas-options", "-Xcompiler", "--compiler-options"}


def check_project(project: Project, backend: str, binding: Binding) -> None:
    """Raise SampleFailed at `policy` with the first rule `project` breaks."""
    cxx_flags(project, backend)
    cuda_flags(project, backend)
    if binding == "kernel-builder":
        for path, content in sorted(project.files.items()):
            for line, problem in _binding_problems(path, content):
                raise SampleFailed("policy", f"{path}:{line}: {problem}; {_ESCAPE}")


def check_task_rules(project: Project, task: Task) -> None:
    """Raise SampleFailed at `policy` when the sources break the task's own rules."""
    if task.backend == "cuda" and task.require_launch:
        problem = _launch_problem(project)
        if problem is not None:
            raise SampleFailed("policy", problem)
    found = forbidden(project, task.forbid)
    if found:
        named = [f"{path}:{line} uses {text!r}" for path, line, text in found[:_MAX_NAMED]]
        more = f" and {len(found) - _MAX_NAMED} more" if len(found) > _MAX_NAMED else ""
        raise SampleFailed(
            "policy",
            f"{'; '.join(named)}{more}: the task forbids {', '.join(map(repr, task.forbid))}",
        )


def forbidden(project: Project, patterns: tuple[str, ...]) -> list[tuple[str, int, str]]:
    """Where the sources (comments and strings aside) hold a pattern: (path, line, text)."""
    compiled = [_pattern(p) for p in patterns]
    found = []
    for path, content in sorted(project.files.items()):
        if path.endswith(_C_FAMILY):
            code = _without_comments(content, keep_strings=False)
        elif path.endswith(".py"):
            code = _python_code(content)
        else:
            continue
        for pattern in compiled:
            for match in pattern.finditer(code):
                found.append((path, _line(code, match.start()), match.group()))
    return sorted(found, key=lambda item: (item[0], item[1]))


def _pattern(text: str) -> re.Pattern[str]:
    """A regular expression, or the plain text where it is not one; a pattern that begins with
    a word character does not match inside a longer word (`at::mm` is not in `cat::mm`)."""
    try:
        source = re.compile(text).pattern
    except re.error:
        source = re.escape(text)
    return re.compile(("(?<!\\w)" if re.match(r"\w", text) else "") + source)


def _launch_problem(project: Project) -> str | None:
    kernels: set[str] = set()
    launches: list[str] = []  # the statements that launch something
    for path, content in sorted(project.files.items()):
        if not path.endswith(_C_FAMILY):
            continue
        code = _KERNEL_ATTRIBUTE.sub(" ", _without_comments(content, keep_strings=False))
        kernels.update(match.group(1) for match in _GLOBAL.finditer(code))
        for match in _LAUNCH.finditer(code):
            begin = max(code.rfind(c, 0, match.start()) for c in ";{}") + 1
            end = code.find(";", match.end())
            launches.append(code[begin : end if end >= 0 else len(code)])
    if not kernels:
        return (
            "the project defines no __global__ function: the task asks for a CUDA kernel, "
            "not only host code or library calls"
        )
    for statement in launches:
        if any(re.search(rf"\b{re.escape(name)}\b", statement) for name in kernels):
            return None
    return (
        f"no __global__ function of the project is launched (defined: {', '.join(sorted(kernels))}"
        "): launch one with <<<...>>> or cudaLaunchKernel"
    )


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


def _allowed_cuda(flag: str) -> bool:
    name, _, value = flag.partition("=")
    if name in ("-Xptxas", "--ptxas-options"):
        return bool(value) and all(_PTXAS_OPTION.fullmatch(v) for v in value.split(","))
    if name in ("-Xcompiler", "--compiler-options"):
        return bool(value) and all(_CXX_FLAG.fullmatch(v) for v in value.split(","))
    return _CUDA_FLAG.fullmatch(flag) is not None


def _binding_problems(path: str, content: str) -> Iterator[tuple[int, str]]:
    if path.endswith(_C_FAMILY):
        yield from _cxx_binding_problems(content)
    elif path.endswith(".py"):
        yield from _python_binding_problems(content)


def _cxx_binding_problems(content: str) -> Iterator[tuple[int, str]]:
    code = _without_comments(content, keep_strings=True)
    for match in _INCLUDE.finditer(code):
        header = match.group(1).strip()
        line = _line(code, match.start())
        if header == "torch/extension.h":
            yield (
                line,
                (
                    "includes torch/extension.h, which kernel-builder does not build with "
                    "(include torch/all.h or torch/library.h)"
                ),
            )
        elif header.startswith("pybind11/"):
            yield (
                line,
                (
                    f"includes {header}: kernel-builder registers ops with TORCH_LIBRARY_EXPAND, "
                    "not Python bindings"
                ),
            )
    code = _DEFINE.sub(_blank, _without_comments(content, keep_strings=False))
    for word, problem in (
        ("PYBIND11_MODULE", "defines a pybind11 module; register ops with TORCH_LIBRARY_EXPAND"),
        ("PyInit_", "defines a Python module init; write REGISTER_EXTENSION(TORCH_EXTENSION_NAME)"),
    ):
        found = re.search(rf"\b{word}", code)
        if found:
            yield _line(code, found.start()), problem
    for match in _LIBRARY_MACRO.finditer(code):
        macro, namespace = match.groups()
        line = _line(code, match.start())
        if namespace != "TORCH_EXTENSION_NAME":
            yield (
                line,
                (
                    f"{macro}({namespace}, ...) hard-codes the op namespace; write "
                    f"{macro.removesuffix('_EXPAND')}_EXPAND(TORCH_EXTENSION_NAME, ...), so each "
                    "build has its own"
                ),
            )
        elif not macro.endswith("_EXPAND"):
            yield (
                line,
                (
                    f"{macro}(TORCH_EXTENSION_NAME, ...) registers the literal namespace "
                    f"'TORCH_EXTENSION_NAME'; write {macro}_EXPAND(TORCH_EXTENSION_NAME, ...)"
                ),
            )


def _python_binding_problems(content: str) -> Iterator[tuple[int, str]]:
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(content).readline))
    except (tokenize.TokenError, SyntaxError):
        return  # the import will say what is wrong with it
    for token in tokens:
        if token.type == tokenize.NAME and token.string in ("cpp_extension", "load_inline"):
            yield (
                token.start[0],
                (
                    f"uses {token.string} to compile at import time; kernel-builder builds "
                    "ahead of time from build.toml"
                ),
            )
            return


def _python_code(content: str) -> str:
    """Python source with comments and strings blanked; lines keep their numbers."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(content).readline))
    except (tokenize.TokenError, SyntaxError):
        return content
    blanked = {tokenize.COMMENT, tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", -1)}
    lines = [list(line) for line in content.splitlines(keepends=True)]
    for token in tokens:
        if token.type not in blanked:
            continue
        (first, start), (last, stop) = token.start, token.end
        for row in range(first, last + 1):
            chars = lines[row - 1]
            for k in range(start if row == first else 0, stop if row == last else len(chars)):
                if chars[k] != "\n":
                    chars[k] = " "
    return "".join("".join(chars) for chars in lines)


def _without_comments(content: str, *, keep_strings: bool) -> str:
    """`content` with comments (and string contents, unless kept) blanked; lines keep numbers."""

    def blank(match: re.Match[str]) -> str:
        token = match.group()
        if token[0] in "\"'":
            return token if keep_strings else '""'
        return _blank(match)

    return _TOKENS.sub(blank, content)


def _blank(match: re.Match[str]) -> str:
    return "\n" * match.group().count("\n") or " "


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1
