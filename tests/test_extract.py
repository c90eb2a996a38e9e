from __future__ import annotations

from pathlib import Path

import pytest

from pytest_upskill.errors import SampleFailed
from pytest_upskill.project.extract import (
    MAX_FILE_BYTES,
    MAX_FILES,
    MAX_REPLY_BYTES,
    extract_files,
    render_reply,
)
from pytest_upskill.project.layout import write_project


def test_info_string_form() -> None:
    reply = (
        "Here is the kernel.\n\n"
        "```cuda kernel_src/add.cu\n__global__ void add() {}\n```\n\n"
        "```toml build.toml\n[general]\n```\n"
    )
    assert extract_files(reply) == {
        "kernel_src/add.cu": "__global__ void add() {}\n",
        "build.toml": "[general]\n",
    }


@pytest.mark.parametrize(
    "label",
    [
        "kernel_src/add.cu",
        "**kernel_src/add.cu**",
        "`kernel_src/add.cu`",
        "File: kernel_src/add.cu",
        "**File:** `kernel_src/add.cu`",
        "### kernel_src/add.cu",
        "- `kernel_src/add.cu`:",
        "1. **kernel_src/add.cu**",
    ],
)
def test_path_on_the_line_before_the_fence(label: str) -> None:
    reply = f"Some prose.\n\n{label}\n```cuda\nint x;\n```\n"
    assert extract_files(reply) == {"kernel_src/add.cu": "int x;\n"}


@pytest.mark.parametrize(
    ("language", "first_line", "path"),
    [
        ("cuda", "// kernel_src/add.cu", "kernel_src/add.cu"),
        ("python", "# torch-ext/add/__init__.py", "torch-ext/add/__init__.py"),
        ("cpp", "/* torch-ext/torch_binding.h */", "torch-ext/torch_binding.h"),
        ("toml", "# File: build.toml", "build.toml"),
    ],
)
def test_path_in_a_first_line_comment(language: str, first_line: str, path: str) -> None:
    reply = f"Prose without a path.\n\n```{language}\n{first_line}\nbody\n```\n"
    assert extract_files(reply) == {path: f"{first_line}\nbody\n"}


def test_blocks_without_a_path_are_left_out() -> None:
    reply = (
        "Usage:\n\n```python\nout = kernel.add(x)\n```\n\n"
        "```cuda kernel_src/add.cu\nint x;\n```\n\n"
        "Compile with:\n```bash\nnvcc -O3 x\n```\n"
    )
    assert list(extract_files(reply)) == ["kernel_src/add.cu"]


def test_a_closing_fence_is_not_a_label_for_the_next_block() -> None:
    reply = "```cuda kernel_src/a.cu\nint a;\n```\n```python\nprint(1)\n```\n"
    assert list(extract_files(reply)) == ["kernel_src/a.cu"]


def test_longer_fences_hold_backticks_and_tildes_work() -> None:
    reply = "````markdown README.md\n```cuda\nx\n```\n````\n~~~python setup.py\npass\n~~~\n"
    assert extract_files(reply) == {"README.md": "```cuda\nx\n```\n", "setup.py": "pass\n"}


def test_unclosed_fence_runs_to_the_end() -> None:
    assert extract_files("```cuda kernel_src/a.cu\nint a;\n") == {"kernel_src/a.cu": "int a;\n"}


def test_last_copy_of_a_file_wins_and_dot_slash_is_normalized() -> None:
    reply = "```cuda ./kernel_src/a.cu\nold\n```\nFixed:\n```cuda kernel_src/a.cu\nnew\n```\n"
    assert extract_files(reply) == {"kernel_src/a.cu": "new\n"}


def test_render_and_extract_round_trip() -> None:
    files = {
        "build.toml": "[general]\nname = 'x'\n",
        "torch-ext/x/__init__.py": 'doc = """```python\ncode\n```"""\n',
        "kernel_src/x.cu": "__global__ void k() {}",
    }
    extracted = extract_files(render_reply(files))
    assert extracted == {
        path: text if text.endswith("\n") else text + "\n" for path, text in files.items()
    }


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/etc/passwd", "is absolute"),
        ("~/.ssh/authorized_keys", "is absolute"),
        ("../outside.cu", "leaves the project"),
        ("kernel_src/../../outside.cu", "leaves the project"),
        ("C:\\Windows\\x.cu", "Windows path"),
        ("kernel_src\\x.cu", "Windows path"),
        ("kernel_src/CON.cu", "names the device 'CON.cu'"),
        ("nul/x.cu", "names the device 'nul'"),
        ("kernel_src./x.cu", "ending in a dot or a space"),
    ],
)
def test_paths_outside_the_project_fail_at_extract(path: str, why: str) -> None:
    with pytest.raises(SampleFailed, match=why) as excinfo:
        extract_files(f"```cuda {path}\nint x;\n```\n")
    assert excinfo.value.stage == "extract"
    assert str(excinfo.value).startswith("upskill [extract] failed: path")


def test_a_reply_without_files_fails_at_extract() -> None:
    with pytest.raises(SampleFailed, match="the reply holds no files") as excinfo:
        extract_files("I cannot help with that.")
    assert excinfo.value.stage == "extract"


def test_paths_that_differ_only_by_case_fail_at_extract() -> None:
    reply = "```cuda kernel_src/add.cu\nint x;\n```\n```cuda kernel_src/Add.cu\nint y;\n```\n"
    with pytest.raises(SampleFailed, match=r"'kernel_src/add\.cu' and 'kernel_src/Add\.cu'"):
        extract_files(reply)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("x" * (MAX_REPLY_BYTES + 1), "the reply is 4.2 MB; replies over 4 MB are refused"),
        (
            "".join(f"```cpp f{i}.cpp\n\n```\n" for i in range(MAX_FILES + 1)),
            f"the reply holds more than {MAX_FILES} files",
        ),
        (
            "```cpp big.cpp\n" + "x" * (MAX_FILE_BYTES + 1) + "\n```\n",
            "big.cpp is 1.0 MB; files over 1 MB are refused",
        ),
    ],
)
def test_runaway_replies_fail_at_extract(reply: str, reason: str) -> None:
    with pytest.raises(SampleFailed, match=reason):
        extract_files(reply)


def test_a_file_where_a_folder_must_go_fails_at_extract(tmp_path: Path) -> None:
    files = extract_files("```cpp kernel.cpp\nint x;\n```\n```cpp kernel.cpp/x.cpp\nint y;\n```\n")
    with pytest.raises(SampleFailed, match=r"kernel\.cpp/x\.cpp cannot be written: File exists"):
        write_project(files, tmp_path / "p")
