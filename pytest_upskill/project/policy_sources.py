"""Stage `policy`, the sources: a lexer that blanks comments and strings (C family and
Python, lines keeping their numbers), and the scans over it for the binding rules, the task's
`forbid` patterns and the launch of a `__global__` function of the project's own.
"""

from __future__ import annotations

import io
import re
import tokenize
from collections.abc import Iterator

from .layout import Project

__all__ = ["binding_problems", "forbidden", "launch_problem"]

_C_FAMILY = (".c", ".cc", ".cpp", ".cxx", ".cu", ".cuh", ".h", ".hh", ".hpp", ".hxx", ".inl", ".mm")
# C and C++ tokens that hide code from a plain search: comments, string and character literals
# (raw strings too). Numbers and names are matched whole so that a digit separator
# (`1'000`) or a literal's prefix (`u8"x"`) is never read as the start of a literal.
_TOKENS = re.compile(
    r"""(?P<raw>(?:u8|[uUL])?R"(?P<delimiter>[^()\\\s"]{0,16})\(.*?\)(?P=delimiter)")"""
    r"""|(?P<name>[A-Za-z_]\w*)"""
    r"""|(?P<number>\.?\d(?:[eEpP][+-]|'(?=\w)|[\w.])*)"""
    r"""|(?P<literal>"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')"""
    r"""|(?P<comment>//[^\n]*|/\*.*?\*/)""",
    re.S,
)
_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*[<"]([^>"\n]+)[>"]', re.M)
# A macro's definition is not a use: kernel-builder's own registration.h defines these.
_DEFINE = re.compile(r"^[ \t]*#[ \t]*define\b(?:\\\n|[^\n])*", re.M)
_LIBRARY_MACRO = re.compile(r"\b(TORCH_LIBRARY(?:_IMPL|_FRAGMENT)?(?:_EXPAND)?)\s*\(\s*(\w*)")
# Attributes between `__global__` and the kernel's name, whose parentheses would hide it.
_KERNEL_ATTRIBUTE = re.compile(r"\b__(launch_bounds|cluster_dims|maxnreg)__\s*\([^)]*\)")
_GLOBAL = re.compile(r"\b__global__\b[^;{}()]*?\b(\w+)\s*\(")
_LAUNCH = re.compile(
    r"<<<|\b(cudaLaunchKernel\w*|cudaLaunchCooperativeKernel\w*|cuLaunchKernel\w*)\s*\("
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


def launch_problem(project: Project) -> str | None:
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


def binding_problems(path: str, content: str) -> Iterator[tuple[int, str]]:
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
        if match["name"] is not None or match["number"] is not None:
            return match.group()
        if match["comment"] is not None:
            return _blank(match)
        if keep_strings:
            return match.group()
        return '""' + "\n" * match.group().count("\n")  # a raw string keeps its lines

    return _TOKENS.sub(blank, content)


def _blank(match: re.Match[str]) -> str:
    return "\n" * match.group().count("\n") or " "


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1
