"""The build and load stages with the real toolchain: g++, ninja, torch's headers."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from conftest import BUILD_DIR, EXAMPLES, ROW_SOFTMAX_TEST, plant
from pytest_upskill.environ import passed_environ, withheld_secrets
from pytest_upskill.errors import SampleError, SampleFailed
from pytest_upskill.generate.providers.oracle import read_project
from pytest_upskill.project.build import build_project
from pytest_upskill.project.layout import Project, load_project, write_project
from pytest_upskill.run.compile import ninja_jobs
from pytest_upskill.task import Task

KERNEL = "kernel_src/row_softmax.cpp"
BINDING = "torch-ext/torch_binding.cpp"
PACKAGE = "torch-ext/row_softmax/__init__.py"


def two_tests(broken: str = "solutions/row_softmax") -> str:
    """A test of a (possibly broken) project, then a test of the good one, in that order."""
    return ROW_SOFTMAX_TEST.replace("def test_row_softmax", "def test_a_planted").replace(
        'reference="solutions/row_softmax"', f'reference="{broken}"'
    ) + ROW_SOFTMAX_TEST.replace("def test_row_softmax", "def test_b_good")


def run(
    pytester: pytest.Pytester, upskill_args: list[str]
) -> tuple[pytest.RunResult, list[dict[str, Any]]]:
    pytester.makepyfile(two_tests("solutions/broken"))
    result = pytester.runpytest("--upskill-model=oracle", "--upskill-report=r.json", *upskill_args)
    return result, json.loads((pytester.path / "r.json").read_text())["samples"]


def test_compile_error_fails_at_build_and_the_session_goes_on(
    pytester: pytest.Pytester, broken: Path, upskill_args: list[str]
) -> None:
    plant(broken, KERNEL, "float sum = 0.f;", "float sum = 0.f; undeclared_thing(sum);")
    result, samples = run(pytester, upskill_args)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*_ test_a_planted[[]oracle-baseline-0[]] _*",
            "upskill [[]build[]] failed: kernel_src/row_softmax.cpp:*: error: "
            "*undeclared_thing*was not declared in this scope*",
            "*= upskill summary =*",
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.no_fnmatch_line("*pytest_upskill/*")
    planted, good = samples
    assert (planted["outcome"], planted["stage"], planted["built"]) == ("failed", "build", False)
    assert "undeclared_thing" in planted["reason"]
    assert (good["outcome"], good["built"]) == ("passed", True)


def test_import_error_fails_at_load(
    pytester: pytest.Pytester, broken: Path, upskill_args: list[str]
) -> None:
    plant(
        broken, PACKAGE, "from ._ops import ops", "from ._ops import ops\nraise ValueError('boom')"
    )
    result, samples = run(pytester, upskill_args)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "upskill [[]load[]] failed: importing the package raised ValueError: boom (row_softmax/__init__.py:4)"
        ]
    )
    assert (samples[0]["stage"], samples[0]["built"]) == ("load", True)


def test_an_extension_without_ops_fails_at_load(
    pytester: pytest.Pytester, broken: Path, upskill_args: list[str]
) -> None:
    (broken / BINDING).write_text(
        '#include "registration.h"\nREGISTER_EXTENSION(TORCH_EXTENSION_NAME)\n'
    )
    result, _ = run(pytester, upskill_args)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["upskill [[]load[]] failed: the extension registered no ops*"])


def test_a_missing_function_fails_at_the_users_assertion(
    pytester: pytest.Pytester, broken: Path, upskill_args: list[str]
) -> None:
    plant(broken, PACKAGE, "def row_softmax(", "def other_name(")
    result, samples = run(pytester, upskill_args)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["E * AttributeError: module * has no attribute 'row_softmax'"])
    assert (samples[0]["stage"], samples[0]["built"]) == ("check", True)
    assert samples[0]["reason"].startswith("AttributeError")


def test_a_project_without_build_toml_fails_at_extract(
    pytester: pytest.Pytester, broken: Path, upskill_args: list[str]
) -> None:
    (broken / "build.toml").unlink()
    result, samples = run(pytester, upskill_args)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(
        ["upskill [[]extract[]] failed: the project has no build.toml at its root"]
    )
    assert (samples[0]["stage"], samples[0]["built"]) == ("extract", False)


def test_unchanged_projects_come_from_the_cache(tmp_path: Path) -> None:
    task = Task(prompt="p", name="row_softmax", backend="cpu")
    files = read_project(EXAMPLES / "solutions" / "row_softmax")
    builds = []
    for attempt in ("a", "b"):
        root = tmp_path / attempt
        project = load_project(root, write_project(files, root), "row_softmax")
        builds.append(build_project(project, task, BUILD_DIR, timeout_s=600))
    first, second = builds
    assert first.ok
    assert second.ok
    assert second.cached
    assert (first.key, first.ext_name, first.directory) == (
        second.key,
        second.ext_name,
        second.directory,
    )
    assert first.ext_name == f"_row_softmax_{first.key[:10]}"
    assert Path(second.directory, "pkg", "row_softmax", f"{second.ext_name}.so").is_file()
    assert (
        "ops = torch.ops." + second.ext_name
        in Path(second.package_dir, "row_softmax", "_ops.py").read_text()
    )


def test_a_build_past_its_timeout_is_stopped_and_not_cached(tmp_path: Path) -> None:
    task = Task(prompt="p", name="row_softmax", backend="cpu")
    files = read_project(EXAMPLES / "solutions" / "row_softmax")
    files[KERNEL] += f"// {uuid.uuid4()}: a project no cache has seen\n"
    project = load_project(tmp_path / "p", write_project(files, tmp_path / "p"), "row_softmax")
    with pytest.raises(SampleFailed, match=r"the build took longer than 0.2 s and was stopped"):
        build_project(project, task, tmp_path / "cache", timeout_s=0.2)
    assert not list((tmp_path / "cache").glob("*/result.json"))


def test_generated_code_gets_an_allow_list_of_the_environment() -> None:
    """What issue 13 found reaching builds and kernels through a deny-list stays out; paths are
    not taken for secrets, so reports keep them."""
    secrets = {
        "ANTHROPIC_API_KEY": "sk-ant-0123456789",
        "DATABASE_URL": "postgres://u:hunter2hunter2@db/x",
        "PIP_EXTRA_INDEX_URL": "https://__token__:pypi-AgEIcHlwaS5vcmc@example/simple",
        "SLACK_WEBHOOK": "https://hooks.example/T000/B000/XXXX",
        "SENTRY_DSN": "https://key@sentry.example/1",
        "HTTPS_PROXY": "http://user:pass@proxy:3128",
        "CI_JOB_JWT": "eyJhbGciOiJSUzI1NiJ9.e30.sig",
        "KUBECONFIG": "/root/.kube/config",
        "CUDA_API_TOKEN": "cuda-family-but-a-token",
    }
    kept = {"PATH": "/usr/bin", "CXX": "g++", "LC_ALL": "C.UTF-8", "CUDA_VISIBLE_DEVICES": "0"}
    environ = {**secrets, **kept, "HOME": "/root", "MY_SETTING": "x"}
    assert passed_environ(environ=environ) == kept
    assert passed_environ(["MY_SETTING"], environ) == {**kept, "MY_SETTING": "x"}
    withheld = withheld_secrets(environ=environ)
    assert set(withheld) == set(secrets.values()) - {"/root/.kube/config"}
    assert withheld == sorted(withheld, key=len, reverse=True)


def test_build_toml_flags_reach_the_compiler_and_an_older_file_warns(
    pytester: pytest.Pytester, broken: Path, upskill_args: list[str]
) -> None:
    # An older build.toml (no edition) whose cxx-flags the kernel cannot build without.
    plant(broken, "build.toml", "version = 1\nedition = 5\n", "")
    plant(
        broken,
        "build.toml",
        'depends = ["torch"]',
        'depends = ["torch"]\ncxx-flags = ["-DCANARY=3"]',
    )
    plant(
        broken,
        KERNEL,
        "#include <cmath>",
        '#include <cmath>\n#if CANARY != 3\n#error "no flags"\n#endif',
    )
    result, samples = run(pytester, upskill_args)
    result.assert_outcomes(passed=2)
    with_flags, good = samples
    assert len(with_flags["warnings"]) == 1
    assert "build.toml has no [general] edition" in with_flags["warnings"][0]
    assert good["warnings"] == []


def _slow_project(tmp_path: Path) -> tuple[Task, Project]:
    """A project no cache has seen, whose build takes far longer than a second."""
    files = read_project(EXAMPLES / "solutions" / "row_softmax")
    files[KERNEL] = f"#include <torch/all.h>  // {uuid.uuid4()}\n" + files[KERNEL]
    root = tmp_path / "slow"
    return Task(prompt="p", name="row_softmax", backend="cpu"), load_project(
        root, write_project(files, root), "row_softmax"
    )


def test_a_hanging_build_is_killed_with_its_compilers_and_the_session_goes_on(
    pytester: pytest.Pytester, broken: Path
) -> None:
    plant(
        broken,
        KERNEL,
        "#include <cmath>",
        f"#include <cmath>\n#include <torch/all.h>  // {uuid.uuid4()}",
    )
    pytester.makepyfile(two_tests("solutions/broken"), test_z="def test_z_goes_on(): pass")
    cache = pytester.path / "cache"
    result = pytester.runpytest(
        "--upskill-model=oracle",
        f"--upskill-build-dir={cache}",
        "--upskill-timeout=2",
        "-p",
        "no:cacheprovider",
    )
    result.stdout.fnmatch_lines(
        ["upskill [[]build[]] failed: the build took longer than 2 s and was stopped"]
    )
    assert result.parseoutcomes()["passed"] >= 1  # test_z, and test_b_good if its build was quick
    survivors = [p for p in Path("/proc").glob("[0-9]*/cmdline") if str(cache) in _read(p)]
    assert survivors == []


def _read(cmdline: Path) -> str:
    try:
        return cmdline.read_bytes().decode(errors="replace")
    except OSError:  # the process ended meanwhile
        return ""


def test_waiting_for_another_build_of_the_same_kernel_has_a_timeout(tmp_path: Path) -> None:
    task, project = _slow_project(tmp_path)
    cache = tmp_path / "cache"
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(build_project, project, task, cache, 5.0)
        while not list(cache.glob(".row_softmax-*/build.ninja")):  # it holds the lock now
            time.sleep(0.05)
        with pytest.raises(
            SampleError, match=r"waited 2 s for another process building the same kernel"
        ):
            build_project(project, task, cache, timeout_s=1.0)
        with pytest.raises(SampleFailed, match="took longer than 5 s"):
            first.result()


def test_max_jobs_bounds_ninja(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_JOBS", "3")
    assert ninja_jobs() == ["-j", "3"]
    for unset in ("", "0", "many"):
        monkeypatch.setenv("MAX_JOBS", unset)
        assert ninja_jobs() == []


def test_a_build_made_in_this_session_is_not_reported_as_cached(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    plant(reference, KERNEL, "#include <cmath>", f"#include <cmath>\n// {uuid.uuid4()}")
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    args = ["--upskill-model=oracle", "--upskill-samples=2", "--upskill-report=r.json"]
    pytester.runpytest(*args, *upskill_args).assert_outcomes(passed=2)
    samples = json.loads((pytester.path / "r.json").read_text())["samples"]
    # The second sample's reply is the first's: its build is a hit, but of this session's.
    assert [s["build_cached"] for s in samples] == [False, False]
    assert all(s["build_cpu_s"] > 0.5 for s in samples)
    pytester.runpytest(*args, *upskill_args).assert_outcomes(passed=2)
    samples = json.loads((pytester.path / "r.json").read_text())["samples"]
    assert [(s["build_cached"], s["build_cpu_s"]) for s in samples] == [(True, 0.0)] * 2


def test_a_build_whose_compiler_was_killed_is_not_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The kernel's OOM killer cannot be called at will: its mark in the log stands in for it.
    from pytest_upskill.project import build as build_module
    from pytest_upskill.run.compile import NinjaRun

    killed = "c++: fatal error: Killed signal terminated program cc1plus\ncompilation terminated."
    monkeypatch.setattr(build_module, "run_ninja", lambda *args, **kwargs: NinjaRun(1, killed, 3.0))
    task = Task(prompt="p", name="row_softmax", backend="cpu")
    files = read_project(EXAMPLES / "solutions" / "row_softmax")
    files[KERNEL] += f"// {uuid.uuid4()}\n"
    project = load_project(tmp_path / "p", write_project(files, tmp_path / "p"), "row_softmax")
    cache = tmp_path / "cache"
    built = build_project(project, task, cache, 60, precompiled_headers=False)
    assert not built.ok
    assert "Killed signal" in built.reason
    assert not list(cache.glob("*/result.json"))
    assert [p.name for p in cache.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["plain", "xdist"])
def test_a_build_that_timed_out_is_not_started_again_in_the_session(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str], workers: list[str]
) -> None:
    """Nor in another process of the session: an xdist worker that waited for the build."""
    plant(
        reference,
        KERNEL,
        "#include <cmath>",
        f"#include <cmath>\n#include <torch/all.h>  // {uuid.uuid4()}",
    )
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    start = time.monotonic()
    pytester.runpytest(
        "--upskill-model=oracle",
        "--upskill-samples=2",
        "--upskill-timeout=2",
        "--upskill-build-jobs=0",
        "--upskill-no-precompiled-headers",
        "--upskill-report=r.json",
        *workers,
        *upskill_args,
    ).assert_outcomes(failed=2)
    samples = json.loads((pytester.path / "r.json").read_text())["samples"]
    assert sorted(s["reason"] for s in samples) == [
        "the build took longer than 2 s and was stopped",
        "the build took longer than 2 s and was stopped (earlier in this session)",
    ]
    assert time.monotonic() - start < 30
