"""Reply -> project files, and back (the oracle renders its reference with `render_reply`).

A file is a fenced block whose path comes from, in this order: the info string
(```cuda kernel_src/x.cu), the line just before the fence (plain, **bold**, `backticked`, after
`File:`), or a first-line comment (// kernel_src/x.cu, # torch-ext/x/__init__.py). Blocks with no
path are prose examples and are left out. Every path must stay inside the project.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import PurePosixPath

from ..errors import SampleFailed

__all__ = [
    "MAX_FILES",
    "MAX_FILE_BYTES",
    "MAX_REPLY_BYTES",
    "check_path",
    "extract_files",
    "render_reply",
]

# A kernel project is tens of kilobytes in a handful of files; far more is a runaway or an attack.
MAX_REPLY_BYTES = 4 * 1024 * 1024
MAX_FILES = 256
MAX_FILE_BYTES = 1024 * 1024
# Names Windows reserves for devices, in any case and with any extension: a checkout of the
# project there would open the device.
_DEVICE = re.compile(r"(CON|PRN|AUX|NUL|COM[0-9¹²³]|LPT[0-9¹²³])(\..*)?", re.I)

_OPEN = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_PATH_LIKE = re.compile(r"[\w.\-/\\:~]+")
_HAS_EXTENSION = re.compile(r"\.[A-Za-z0-9_]+$")
_LABEL = re.compile(r"^(?:[-*+]\s+|\d+[.)]\s+|#+\s*)?(?:(?:file|filename|path)\s*:\s*)?", re.I)
_INFO_KEY = re.compile(r"^(?:title|file|filename|path)=", re.I)
_COMMENT = re.compile(
    r"^\s*(?://+|#+|--|;+|/\*+|<!--)\s*(?:(?:file|filename|path)\s*:\s*)?(?P<path>\S+?)"
    r"\s*(?:\*+/|-->)?\s*$",
    re.I,
)
_LANGUAGES = {
    ".cu": "cuda",
    ".cuh": "cuda",
    ".cpp": "cpp",
    ".cc": "cpp",
    ".cxx": "cpp",
    ".h": "cpp",
    ".hpp": "cpp",
    ".py": "python",
    ".toml": "toml",
    ".md": "markdown",
    ".txt": "text",
}


def render_reply(files: dict[str, str]) -> str:
    """Render files in the reply format: one fenced block per file, path in the info string."""
    blocks = []
    for path, content in files.items():
        language = _LANGUAGES.get(PurePosixPath(path).suffix, "text")
        # A fence longer than any backtick run inside the file keeps the block intact.
        longest = max((len(run) for run in re.findall(r"`+", content)), default=0)
        fence = "`" * max(3, longest + 1)
        body = content if content.endswith("\n") else content + "\n"
        blocks.append(f"{fence}{language} {path}\n{body}{fence}\n")
    return "\n".join(blocks)


def _looks_like_path(token: str) -> bool:
    return (
        bool(_PATH_LIKE.fullmatch(token))
        and "://" not in token
        and ("/" in token or "\\" in token or bool(_HAS_EXTENSION.search(token)))
    )


def _path_in_info(info: str) -> str | None:
    tokens = [_INFO_KEY.sub("", token).strip("\"'") for token in info.split()]
    # The first token is the language unless it is a path itself (```kernel_src/x.cu).
    for token in tokens[1:] or tokens:
        if _looks_like_path(token):
            return token
    return None


def _path_in_label(line: str) -> str | None:
    # Emphasis and backticks never belong to a path we accept: drop them, then the label.
    text = _LABEL.sub("", line.replace("*", "").replace("`", "").strip()).strip().rstrip(":")
    return text if _looks_like_path(text) else None


def _path_in_comment(line: str) -> str | None:
    match = _COMMENT.match(line)
    if match and _looks_like_path(match["path"]):
        return match["path"]
    return None


def check_path(path: str) -> str:
    """The normalized relative path, or SampleFailed at `extract` saying why it is refused."""

    def refuse(why: str) -> SampleFailed:
        return SampleFailed(
            "extract",
            f"path {path!r} in the reply {why}; "
            "only relative paths inside the project are accepted",
        )

    if not path or any(ord(ch) < 32 or 0xD800 <= ord(ch) <= 0xDFFF for ch in path):
        raise refuse("is empty or holds control characters or lone surrogates")
    if "\\" in path or re.match(r"^[A-Za-z]:", path):
        raise refuse("is a Windows path")
    if path.startswith(("/", "~")):
        raise refuse("is absolute")
    parts = path.split("/")
    if ".." in parts:
        raise refuse("leaves the project with '..'")
    for part in parts:
        if _DEVICE.fullmatch(part):
            raise refuse(f"names the device {part!r}")
        if part != part.rstrip(". ") and part not in (".", ""):
            raise refuse("has a name ending in a dot or a space")
    normalized = posixpath.normpath(path)
    if normalized in (".", ""):
        raise refuse("names no file")
    return normalized


def _new_path(path: str, files: dict[str, str]) -> str:
    """`path`, unless it would clash with a file already there on a case-insensitive disk (the
    same file again is fine: the last copy wins), or make one file too many."""
    for other in files:
        if other != path and other.lower() == path.lower():
            raise SampleFailed(
                "extract", f"paths {other!r} and {path!r} in the reply differ only by case"
            )
    if path not in files and len(files) >= MAX_FILES:
        raise SampleFailed(
            "extract", f"the reply holds more than {MAX_FILES} files; a project needs a few"
        )
    return path


def _content(path: str, body: list[str]) -> str:
    content = "".join(body)
    size = len(content.encode("utf-8", "surrogatepass"))
    if size > MAX_FILE_BYTES:
        raise SampleFailed(
            "extract",
            f"{path} is {size / 1e6:.1f} MB; files over {MAX_FILE_BYTES / 1e6:.0f} MB are refused",
        )
    return content


def extract_files(reply: str) -> dict[str, str]:
    """The project files in `reply`, by normalized relative path; the last copy of a file wins."""
    size = len(reply.encode("utf-8", "surrogatepass"))
    if size > MAX_REPLY_BYTES:
        raise SampleFailed(
            "extract",
            f"the reply is {size / 1e6:.1f} MB; replies over {MAX_REPLY_BYTES / 1e6:.0f} MB are "
            "refused",
        )
    lines = reply.splitlines(keepends=True)
    files: dict[str, str] = {}
    previous = ""  # the last non-blank line of prose before the current line
    i = 0
    while i < len(lines):
        opened = _OPEN.match(lines[i].rstrip("\r\n"))
        if not opened:
            if lines[i].strip():
                previous = lines[i]
            i += 1
            continue
        fence = opened["fence"]
        close = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        body: list[str] = []
        i += 1
        while i < len(lines) and not close.match(lines[i].rstrip("\r\n")):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence; an unclosed block runs to the end, as in CommonMark
        path = (
            _path_in_info(opened["info"])
            or _path_in_label(previous)
            or (_path_in_comment(body[0]) if body else None)
        )
        previous = ""
        if path is not None:
            files[_new_path(check_path(path), files)] = _content(path, body)
    if not files:
        raise SampleFailed(
            "extract",
            "the reply holds no files: each file must be a fenced block "
            "whose info string is the language and the file's path",
        )
    return files
