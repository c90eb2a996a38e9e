"""Precompiled torch headers with the real g++: what gets compiled does not change, and a
project's own headers still win."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shlex
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from filelock import FileLock
from symbols import defined_symbols

from conftest import BUILD_DIR, EXAMPLES
from pytest_upskill.errors import SampleFailed
from pytest_upskill.generate.providers.oracle import read_project
from pytest_upskill.project.build import Build, build_project
from pytest_upskill.project.includes import depfile_paths, first_include
from pytest_upskill.project.instantiate import PRAGMA, instantiating_plugin
from pytest_upskill.project.layout import load_project, write_project
from pytest_upskill.project.pch import (
    PRECOMPILED,
    UNUSED_S,
    Precompiled,
    evict_unused,
    forget_given_up,
    precompiled_header,
    shadowed,
)
from pytest_upskill.project.toolchain import detect_toolchain
from pytest_upskill.run.compile import KILLED, read_usage
from pytest_upskill.run.sandbox import mechanism
from pytest_upskill.task import Task

KERNEL = "kernel_src/row_softmax.cpp"
BINDING = "torch-ext/torch_binding.cpp"
TASK = Task(prompt="p", name="row_softmax", backend="cpu")


def build(
    tmp_path: Path, files: dict[str, str], pch: bool = True, instantiate: bool = True
) -> Build:
    """A build of `files` in the sandbox: with precompiled headers in the suite's shared cache
    (so they are made once for the whole suite), without them in a cache of its own (so both
    build the same files)."""
    root = tmp_path / f"project-{uuid.uuid4().hex[:8]}"
    project = load_project(root, write_project(files, root), "row_softmax")
    cache = BUILD_DIR if pch else tmp_path / "plain"
    return build_project(
        project,
        TASK,
        cache,
        600,
        sandbox=mechanism(),
        precompiled_headers=pch,
        instantiate=instantiate,
    )


def plugin(folder: Path = BUILD_DIR / "pch") -> Path | None:
    """The instantiating plugin, built in `folder` (by default the suite's cache); None where
    g++ has no plugin headers (CI installs them: there it must build)."""
    toolchain = detect_toolchain()
    built = instantiating_plugin(toolchain.cxx, toolchain.fingerprint, folder)
    if built is None and os.environ.get("UPSKILL_REQUIRE_GCC_PLUGIN"):
        raise RuntimeError("UPSKILL_REQUIRE_GCC_PLUGIN is set, but the GCC plugin does not build")
    return built


@pytest.fixture(scope="module", autouse=True)
def headers_wanted(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One build of the example wants its headers, so the tests' builds make and use them (a
    header is made when a second build wants it)."""
    build(tmp_path_factory.mktemp("wanted"), example())
    build(tmp_path_factory.mktemp("wanted"), example(), instantiate=False)


def example() -> dict[str, str]:
    """The example project, with a comment no cache has seen."""
    files = read_project(EXAMPLES / "solutions" / "row_softmax")
    return {**files, KERNEL: f"// {uuid.uuid4()}\n" + files[KERNEL]}


def pch_folders(built: Build) -> dict[str, str]:
    """Each source's precompiled header folder, read from the build.ninja the build wrote."""
    folders = {}
    source = ""
    for line in Path(built.directory, "build.ninja").read_text().splitlines():
        if line.startswith("build obj/"):
            source = line.split(": cxx src/")[-1]
        found = re.search(r"-isystem (\S*/pch/[0-9a-f]{16}/include)", line)
        if line.startswith("  cflags = ") and found:
            folders[source] = found.group(1)
    return folders


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("#include <torch/all.h>\nint x;", ("torch/all.h", False)),
        ('\n\n  # include "torch/library.h" // why\n', ("torch/library.h", True)),
        (
            "// a comment\n/* another\n over lines */\n#include <ATen/ATen.h>",
            ("ATen/ATen.h", False),
        ),
        ("#include <torch/all.h>", ("torch/all.h", False)),
        ("#define X 1\n#include <torch/all.h>", None),
        ("#pragma once\n#include <torch/all.h>", None),
        ("int x;\n#include <torch/all.h>", None),
        ("// continued \\\n#include <torch/all.h>", None),
        ("// continued, blanks after \\ \t\r\n#include <torch/all.h>", None),
        ("#include <torch/all.h>\r\nint x;", ("torch/all.h", False)),
        ("/* never closed\n#include <torch/all.h>", None),
        ("#include <torch/all.h> int x;", None),
        ("#include MACRO_HEADER", None),
        ("", None),
    ],
)
def test_the_first_include_is_found_only_when_nothing_comes_before_it(
    text: str, expected: tuple[str, bool] | None
) -> None:
    assert first_include(text) == expected


def test_the_first_include_is_found_in_one_pass() -> None:
    start = time.perf_counter()
    assert first_include("/* " * 30_000 + "\n#include <torch/all.h>") is None
    assert first_include("/**/" * 30_000 + "#include <torch/all.h>") == ("torch/all.h", False)
    assert first_include("//\n" * 100_000 + "#include <torch/all.h>") == ("torch/all.h", False)
    assert time.perf_counter() - start < 1.0


def test_no_listed_header_includes_through_its_own_folder() -> None:
    """The copy beside its .gch stands alone: a header that included a neighbour by a quoted
    name would find it beside the original only."""
    include = Path(detect_toolchain().torch_dir) / "include"
    for header in PRECOMPILED:
        path = next(
            p for p in (include, include / "torch/csrc/api/include") if (p / header).exists()
        )
        text = (path / header).read_text()
        for quoted in re.findall(r'#\s*include\s*"([^"]+)"', text):
            assert not (path / header).parent.joinpath(quoted).exists(), (header, quoted)


@pytest.mark.parametrize("instantiate", [False, True])
def test_objects_are_the_same_and_the_gch_is_used(tmp_path: Path, instantiate: bool) -> None:
    """Byte for byte; with the instantiations in the header, the same code in another order."""
    if instantiate and plugin() is None:
        pytest.skip("g++ has no plugin headers here (Debian: gcc-12-plugin-dev)")
    files = example()
    with_pch = build(tmp_path, files, instantiate=instantiate)
    without = build(tmp_path, files, pch=False)
    assert with_pch.ok, with_pch.reason
    assert without.ok, without.reason
    assert with_pch.key == without.key  # the same build as far as the cache can tell
    objects = sorted(Path(without.directory, "obj").rglob("*.o"))
    assert len(objects) == 2
    for plain in objects:
        other = Path(with_pch.directory) / plain.relative_to(without.directory)
        if instantiate:
            assert defined_symbols(other) == defined_symbols(plain), plain.name
        else:
            assert other.read_bytes() == plain.read_bytes(), plain.name
    library = f"pkg/row_softmax/{with_pch.ext_name}.so"
    assert Path(with_pch.directory, library).stat().st_size > 0
    assert pch_folders(without) == {}
    folders = pch_folders(with_pch)
    assert set(folders) == {BINDING, KERNEL}
    # On the include path: the header's copy and its .gch, nothing a source could probe for.
    shown = {str(path.relative_to(folders[KERNEL])) for path in Path(folders[KERNEL]).rglob("*")}
    assert {name for name in shown if Path(folders[KERNEL], name).is_file()} == {
        "ATen/core/Tensor.h",
        "ATen/core/Tensor.h.gch",
    }
    copy = Path(folders[KERNEL], "ATen/core/Tensor.h").read_bytes()
    assert copy.endswith(PRAGMA) == instantiate
    # g++ -H on the command line the build wrote: `!` marks a precompiled header it used.
    ninja = Path(with_pch.directory, "build.ninja").read_text()
    flags = re.search(r"build obj/kernel_src.*\n  cflags = (.*)", ninja)
    assert flags is not None
    source = Path(with_pch.directory, "src", KERNEL)
    used = subprocess.run(
        [detect_toolchain().cxx, *shlex.split(flags.group(1)), "-H", "-fsyntax-only", str(source)],
        cwd=with_pch.directory,
        capture_output=True,
        text=True,
        check=True,
    ).stderr
    assert f"! {folders[KERNEL]}/ATen/core/Tensor.h.gch" in used.splitlines()[0]
    assert with_pch.cpu_s > 0.5
    assert without.cpu_s > with_pch.cpu_s


LABELLED = """\t.section .rodata.str1.1,"aMS",@progbits,1
{labels}\t.text
\t.globl {name}
{name}:
{loads}\tret
"""


@pytest.mark.parametrize(
    ("numbers", "name", "same"),
    [((5,), "f", True), ((3, 4), "f", False), ((3,), "g", False)],
)
def test_objects_compare_by_their_local_labels_count_not_their_numbers(
    tmp_path: Path, numbers: tuple[int, ...], name: str, same: bool
) -> None:
    """A string constant's label (`.LC3`) is numbered in the order g++ emitted it, which the
    instantiations in a header change (the H100 RMSNorm's binding: .LC76-80 against
    .LC70-74); how many there are, and every other name, still count."""

    def assembled(stem: str, numbers: tuple[int, ...], name: str) -> Path:
        labels = "".join(f'.LC{number}:\n\t.string "{number}"\n' for number in numbers)
        source = tmp_path / f"{stem}.s"
        loads = "".join(f"\tleaq .LC{number}(%rip), %rax\n" for number in numbers)
        source.write_text(LABELLED.format(labels=labels, name=name, loads=loads))
        subprocess.run(["as", str(source), "-o", str(source.with_suffix(".o"))], check=True)
        return source.with_suffix(".o")

    assert (
        defined_symbols(assembled("one", (3,), "f"))
        == defined_symbols(assembled("other", numbers, name))
    ) == same


MARKED = """#pragma once
#include_next <{header}>
#define PROJECT_OWN_HEADER 1
"""
CHECK = "\n#ifndef PROJECT_OWN_HEADER\n#error the project's own header was not read\n#endif\n"


@pytest.mark.parametrize(
    ("own", "source", "kept"),
    [
        # Read by both precompiled headers, from the project's root folder.
        ("c10/util/Exception.h", KERNEL, set()),
        # The binding's precompiled header itself; the kernel's does not read it.
        ("torch/library.h", BINDING, {KERNEL}),
        # In the other folder the project puts on the include path.
        ("torch-ext/c10/macros/Macros.h", BINDING, set()),
        # A C library header, read from the compiler's own folders: -I comes before those too.
        ("features.h", KERNEL, set()),
    ],
)
def test_a_projects_own_header_still_wins(
    tmp_path: Path, own: str, source: str, kept: set[str]
) -> None:
    files = example()
    header = own.removeprefix("torch-ext/")
    files[own] = MARKED.format(header=header)
    files[source] += CHECK
    built = build(tmp_path, files)
    assert built.ok, built.reason
    assert set(pch_folders(built)) == kept


def test_a_source_with_flags_of_its_own_compiles_without(tmp_path: Path) -> None:
    files = example()
    files["build.toml"] = files["build.toml"].replace(
        'depends = ["torch"]', 'depends = ["torch"]\ncxx-flags = ["-DCANARY=3"]'
    )
    built = build(tmp_path, files)
    assert built.ok, built.reason
    assert set(pch_folders(built)) == {BINDING}


def test_a_compile_error_reads_the_same_with_and_without(tmp_path: Path) -> None:
    files = example()
    files[KERNEL] = files[KERNEL].replace("float sum = 0.f;", "flaot sum = 0.f;")
    with_pch, without = build(tmp_path, files), build(tmp_path, files, pch=False)
    assert not with_pch.ok
    assert not without.ok
    assert with_pch.reason == without.reason
    assert "flaot" in with_pch.reason

    def errors(built: Build) -> list[str]:
        return [line for line in built.log.splitlines() if line.startswith("src/kernel_src")]

    assert errors(with_pch) == errors(without) != []


def test_a_header_precompiled_once_serves_later_builds(tmp_path: Path) -> None:
    def gch(built: Build) -> set[tuple[int, int]]:
        stats = [next(Path(folder).rglob("*.gch")).stat() for folder in pch_folders(built).values()]
        return {(found.st_ino, found.st_mtime_ns) for found in stats}

    first = build(tmp_path, example())
    second = build(tmp_path, example())
    assert pch_folders(second) == pch_folders(first)
    assert gch(second) == gch(first)  # not made again
    for folder in pch_folders(second).values():
        reads = json.loads(Path(folder).parent.joinpath("made").read_text())["reads"]
        assert "c10/util/Exception.h" in reads


def test_the_usage_file_is_read_only_when_it_is_a_small_regular_file(tmp_path: Path) -> None:
    usage = tmp_path / "usage"
    usage.write_text("12.5")
    assert read_usage(usage) == 12.5
    os.mkfifo(tmp_path / "fifo")  # a sandbox could leave one: reading it must not block
    assert read_usage(tmp_path / "fifo") == 0.0
    (tmp_path / "link").symlink_to(usage)
    assert read_usage(tmp_path / "link") == 0.0
    for forged in ("-3", "nan", "1e300", "x"):
        usage.write_text(forged)
        assert read_usage(usage) == 0.0
    assert read_usage(tmp_path / "missing") == 0.0


def test_a_header_made_past_the_timeout_is_not_kept(tmp_path: Path) -> None:
    for variant in ("wants the headers", "makes them"):
        root = tmp_path / variant
        project = load_project(root, write_project(example(), root), "row_softmax")
        with pytest.raises(SampleFailed, match=r"the build took longer than 0.2 s"):
            build_project(project, TASK, tmp_path / "cache", 0.2, sandbox=mechanism())
    pch = tmp_path / "cache" / "pch"
    made = sorted(path.suffix for path in pch.iterdir() if path.suffix != ".so")  # no plugin
    assert made == [".lock"] * 2 + [".wanted"] * 2


def test_depfile_paths_unescape_what_gcc_escapes() -> None:
    text = "/a\\ b/pch/all.h.gch: /a\\ b/pch/all.h \\\n /a\\ b/inc/c10/X.h /x/\\#y.h /d/$$z.h\n"
    assert depfile_paths(text) == ["/a b/pch/all.h", "/a b/inc/c10/X.h", "/x/#y.h", "/d/$z.h"]


def test_a_killed_compiler_is_told_from_a_diagnostic_that_quotes_one() -> None:
    quoted = "src/kernel_src/x.cpp:3:2: error: #error Killed signal terminated program cc1plus"
    assert KILLED.search(quoted) is None
    assert KILLED.search("c++: fatal error: Killed signal terminated program cc1plus")
    assert KILLED.search("x\n/usr/bin/g++-12: internal compiler error: Killed (program cc1plus)")
    assert KILLED.search("ninja: fatal: posix_spawn: Resource temporarily unavailable")


def test_a_projects_own_header_that_a_precompiled_one_probes_for_still_wins(
    tmp_path: Path,
) -> None:
    """libstdc++'s configuration, which torch's headers read, asks `__has_include(<tbb/tbb.h>)`:
    a project's own tbb/tbb.h turns on its TBB backend, as it does without precompiled
    headers, whose answer was given without the project."""
    files = example()
    files["tbb/tbb.h"] = "#pragma once\n"
    files[KERNEL] += "\n#ifndef _PSTL_PAR_BACKEND_TBB\n#error tbb/tbb.h was not found\n#endif\n"
    built = build(tmp_path, files)
    assert built.ok, built.reason
    assert pch_folders(built) == {}
    del files["tbb/tbb.h"]
    assert not build(tmp_path, files).ok  # the check can fail


def test_a_header_probed_for_counts_as_read_and_is_made_again_when_the_answer_changes(
    tmp_path: Path,
) -> None:
    header, flags, folders = umbrella(tmp_path)
    umbrella_h = tmp_path / "inc" / header
    umbrella_h.write_text("#pragma once\n#if __has_include(<lib/extra.h>)\nint extra();\n#endif\n")
    root = tmp_path / "pch"

    def make() -> Precompiled | None:
        forget_given_up()  # a new session checks again
        return precompiled_header(
            header, flags, folders, detect_toolchain(), root, 120, mechanism(), at_once=True
        )

    made = make()
    assert made is not None
    assert "lib/extra.h" in made.reads
    assert shadowed(made, "a.cpp", False, ["lib/extra.h"], [""])
    record = made.folder.parent / "made"
    first = record.read_text()
    assert make() == made
    assert record.read_text() == first  # unchanged: not made again
    (tmp_path / "inc" / "lib" / "extra.h").write_text("#pragma once\n")  # a library installed
    assert make() is not None
    assert record.read_text() != first
    assert json.loads(record.read_text())["probes"][str(tmp_path / "inc" / "lib" / "extra.h")]


def test_a_header_reached_through_a_link_is_checked_and_made_again_when_it_changes(
    tmp_path: Path,
) -> None:
    """A tiny umbrella header in a folder reached through a link (as a virtual environment
    often is): what it reads is named under each folder, the compiler's own included, and a
    change to any of them makes it again."""
    real = tmp_path / "real"
    (real / "lib").mkdir(parents=True)
    (real / "lib" / "umbrella.h").write_text("#pragma once\n#include <lib/part.h>\n")
    (real / "lib" / "part.h").write_text("#pragma once\n#include <cstddef>\nint part();\n")
    linked = tmp_path / "a-longer-name-for-the-same-folder"
    linked.symlink_to(real)
    toolchain = detect_toolchain()
    flags = ["-std=c++20", "-isystem", str(linked), "-fPIC", "-O2"]

    def make() -> Precompiled | None:
        return precompiled_header(
            "lib/umbrella.h",
            flags,
            [str(linked)],
            toolchain,
            tmp_path / "pch",
            120,
            mechanism(),
            at_once=True,
        )

    made = make()
    assert made is not None
    assert {"lib/umbrella.h", "lib/part.h", "cstddef"} <= made.reads
    assert shadowed(made, "a.cpp", False, ["cstddef", "a.cpp"], [""])
    assert shadowed(made, "a.cpp", False, ["include/lib/part.h"], ["include"])
    assert not shadowed(made, "a.cpp", False, ["include/lib/other.h"], ["include"])
    record = made.folder.parent / "made"
    first = record.read_text()
    forget_given_up()  # a new session checks again
    again = make()
    assert again == made
    assert record.read_text() == first  # unchanged: not made again
    (real / "lib" / "part.h").write_text("#pragma once\n#include <cstddef>\nint part(int);\n")
    forget_given_up()
    remade = make()
    assert remade is not None
    assert record.read_text() != first


def umbrella(tmp_path: Path) -> tuple[str, list[str], list[str]]:
    """A tiny umbrella header, its flags and its system folders: quick to precompile."""
    (tmp_path / "inc" / "lib").mkdir(parents=True)
    (tmp_path / "inc" / "lib" / "umbrella.h").write_text("#pragma once\nint part();\n")
    return (
        "lib/umbrella.h",
        ["-std=c++20", "-isystem", str(tmp_path / "inc")],
        [str(tmp_path / "inc")],
    )


def test_a_header_the_plugin_cannot_make_is_made_as_gxx_makes_it_alone(tmp_path: Path) -> None:
    root = tmp_path / "pch"
    built = plugin(root)
    if built is None:
        pytest.skip("g++ has no plugin headers here (Debian: gcc-12-plugin-dev)")
    built.write_bytes(b"\x7fELF, but not a plugin")
    header, flags, folders = umbrella(tmp_path)
    made = precompiled_header(
        header, flags, folders, detect_toolchain(), root, 120, mechanism(), at_once=True
    )
    assert made is not None
    assert (made.folder / header).read_bytes() == (tmp_path / "inc" / header).read_bytes()
    assert Path(made.folder, f"{header}.gch").stat().st_size > 0
    assert not (made.folder.parent / "failed").exists()


def test_a_header_is_made_when_wanted_again_and_goes_when_unused_for_weeks(tmp_path: Path) -> None:
    root = tmp_path / "pch"
    header, flags, folders = umbrella(tmp_path)
    toolchain = detect_toolchain()
    for _ in range(2):  # one build wants it twice (its build ahead, then its test): not made
        wanted = precompiled_header(
            header, flags, folders, toolchain, root, 120, mechanism(), wanted_by="a-build"
        )
        assert wanted is None
    (marker,) = root.glob("*.wanted")
    used = precompiled_header(
        header, flags, folders, toolchain, root, 120, mechanism(), wanted_by="another"
    )
    assert used is not None  # wanted by another build: made
    assert marker.name == f"{used.folder.parent.name}.wanted"
    long_ago = time.time() - UNUSED_S - 3600
    for name in ("0123456789abcdef", "fedcba9876543210", "not-a-key", "1111111111111111"):
        (root / name / "include").mkdir(parents=True)
        (root / name / "made").write_text("{}")
        if name != "1111111111111111":  # the one used lately
            for path in (root / name / "made", root / name):
                os.utime(path, (long_ago, long_ago))
    os.utime(used.folder.parent / "made", (long_ago, long_ago))
    os.utime(used.folder.parent, (long_ago, long_ago))
    forget_given_up()  # a new session: it uses the made header again, which marks it used
    assert precompiled_header(header, flags, folders, toolchain, root, 120, mechanism()) == used
    with FileLock(f"{root / 'fedcba9876543210'}.lock"):  # being checked by another process
        other = precompiled_header(
            header, [*flags, "-O2"], folders, toolchain, root, 120, None, at_once=True
        )
    assert other is not None
    assert sorted(path.name for path in root.iterdir() if path.is_dir()) == sorted(
        [
            "fedcba9876543210",
            "not-a-key",
            "1111111111111111",
            used.folder.parent.name,
            other.folder.parent.name,
        ]
    )
    later = time.time() + UNUSED_S + 3600  # weeks later, nothing used since
    for name in ("aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "not-a-key"):  # wanted by one build
        (root / f"{name}.wanted").write_text("a-build")
    os.utime(root / "aaaaaaaaaaaaaaaa.wanted", (later - 60, later - 60))  # lately
    (root / "cccccccccccccccc.wanted").mkdir()
    evict_unused(root, now=later)
    assert sorted(path.name for path in root.iterdir() if path.is_dir()) == [
        "cccccccccccccccc.wanted",
        "not-a-key",
    ]
    assert sorted(path.name for path in root.glob("*.wanted") if path.is_file()) == [
        "aaaaaaaaaaaaaaaa.wanted",
        "not-a-key.wanted",
    ]


NICE_CXX = """#!/bin/sh
# Notes the priority it runs at when it makes a precompiled header.
case "$*" in *c++-header*) cut -d' ' -f19 /proc/self/stat > seen-nice ;; esac
exec {cxx} "$@"
"""


def test_a_header_made_by_a_build_ahead_is_made_at_its_lower_priority(tmp_path: Path) -> None:
    header, flags, folders = umbrella(tmp_path)
    cxx = tmp_path / "bin" / "c++"
    cxx.parent.mkdir()
    cxx.write_text(NICE_CXX.format(cxx=detect_toolchain().cxx))
    cxx.chmod(0o755)
    toolchain = dataclasses.replace(detect_toolchain(), cxx=str(cxx))
    made = precompiled_header(
        header, flags, folders, toolchain, tmp_path / "pch", 120, mechanism(), at_once=True, nice=7
    )
    assert made is not None
    assert (made.folder.parent / "seen-nice").read_text().strip() == str(os.nice(0) + 7)
