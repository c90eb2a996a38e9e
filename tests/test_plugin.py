"""Real pytest sessions of small upskill suites, run with pytester."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from conftest import INTERRUPTIBLE_PYTEST, ROW_SOFTMAX_TEST


def test_help_lists_the_upskill_group(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "pytest-upskill: measure agent skills on real kernels:",
            "*--upskill-model=SPEC*",
            "*--upskill-skill=DIR*",
            "*--upskill-no-baseline*",
            "*--upskill-samples=N*",
            "*--upskill-report=PATH*",
            "*upskill_models (linelist)*",
        ]
    )


def test_without_a_model_upskill_tests_skip_and_others_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.upskill("Write a kernel.", backend="cpu")
        def test_kernel(kernel):
            raise AssertionError("must not run")

        def test_plain():
            pass
        """
    )
    result = pytester.runpytest("-rs", "--strict-markers")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED *no upskill model configured: pass --upskill-model=*"])
    result.stdout.no_fnmatch_line("*upskill summary*")


def test_unused_plugin_imports_neither_torch_nor_the_sdks(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import sys

        def test_modules():
            heavy = {"torch", "anthropic", "openai", "pydantic", "yaml"} & set(sys.modules)
            assert not heavy
        """
    )
    result = pytester.runpytest("-p", "no:xdist", "-p", "no:hypothesispytest")
    result.assert_outcomes(passed=1)


def test_oracle_runs_the_whole_pipeline(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    result = pytester.runpytest(
        "-v", "--upskill-model=oracle", "--upskill-report=out.json", *upskill_args
    )
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*::test_row_softmax[[]oracle-baseline-0[]] PASSED*",
            "*= upskill summary =*",
            "model*condition*passed*rate*95% CI*built*",
            "oracle*baseline*1/1*100%*[[]21%, 100%[]]*1*",
            "upskill report: *out.json",
        ]
    )
    report = json.loads((pytester.path / "out.json").read_text())
    assert report["schema"] == "pytest-upskill/1"
    (sample,) = report["samples"]
    assert (
        sample["nodeid"]
        == "test_oracle_runs_the_whole_pipeline.py::test_row_softmax[oracle-baseline-0]"
    )
    assert (sample["model"], sample["condition"], sample["sample"]) == ("oracle", "baseline", 0)
    assert (sample["outcome"], sample["stage"], sample["built"]) == ("passed", "check", True)
    assert sample["usage"] == {"input_tokens": 0, "output_tokens": 0}
    directory = Path(sample["directory"])
    assert (directory / "reply.md").read_text().startswith("```toml build.toml")
    assert (directory / "project" / "kernel_src" / "row_softmax.cpp").is_file()
    assert report["summary"][0]["pass_rate"] == 1.0


def test_skills_and_samples_multiply_items_with_readable_ids(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    skill = Path(__file__).resolve().parents[1] / "examples" / "skills" / "cpu-kernels"
    result = pytester.runpytest(
        "-v",
        "--upskill-model=oracle",
        f"--upskill-skill={skill}",
        "--upskill-samples=2",
        *upskill_args,
    )
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines_random(
        [
            "*::test_row_softmax[[]oracle-baseline-0[]] PASSED*",
            "*::test_row_softmax[[]oracle-baseline-1[]] PASSED*",
            "*::test_row_softmax[[]oracle-cpu-kernels-0[]] PASSED*",
            "*::test_row_softmax[[]oracle-cpu-kernels-1[]] PASSED*",
            "oracle*baseline*2/2*100%*",
            "oracle*cpu-kernels*2/2*100%*",
        ]
    )


def test_ini_twins(pytester: pytest.Pytester, reference: Path, upskill_args: list[str]) -> None:
    skill = Path(__file__).resolve().parents[1] / "examples" / "skills" / "cpu-kernels"
    pytester.makeini(
        f"""
        [pytest]
        upskill_models = oracle
        upskill_skills = {skill}
        upskill_baseline = false
        upskill_samples = 3
        upskill_report = reports/upskill.json
        """
    )
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    result = pytester.runpytest("--collect-only", "-q", *upskill_args)
    result.stdout.fnmatch_lines(
        [f"*::test_row_softmax[[]oracle-cpu-kernels-{i}[]]" for i in range(3)]
        + ["3 tests collected*"]
    )
    result = pytester.runpytest("-q", *upskill_args)
    result.assert_outcomes(passed=3)
    assert len(json.loads((pytester.path / "reports" / "upskill.json").read_text())["samples"]) == 3


def test_command_line_wins_over_ini(pytester: pytest.Pytester, reference: Path) -> None:
    pytester.makeini("[pytest]\nupskill_models = anthropic:claude-x\nupskill_samples = 5\n")
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    result = pytester.runpytest(
        "--collect-only", "-q", "--upskill-model=oracle", "--upskill-samples=1"
    )
    result.stdout.fnmatch_lines(["*::test_row_softmax[[]oracle-baseline-0[]]", "1 test collected*"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--upskill-model=gpt-5"],
            "ERROR: --upskill-model: unknown model 'gpt-5': use anthropic:MODEL*",
        ),
        (
            ["--upskill-model=oracle", "--upskill-samples=0"],
            "ERROR: --upskill-samples: expected a whole number*'0'",
        ),
        (
            ["--upskill-model=oracle", "--upskill-no-baseline"],
            "ERROR: --upskill-no-baseline leaves no condition*",
        ),
        (
            ["--upskill-model=oracle", "--upskill-skill=nowhere"],
            "ERROR: --upskill-skill: *nowhere: is not a directory*",
        ),
        (
            ["--upskill-model=oracle", "--upskill-timeout=0"],
            "ERROR: --upskill-timeout: expected a number of seconds above 0, got '0'",
        ),
        (
            ["--upskill-model=oracle", "--upskill-timeout=soon"],
            "ERROR: --upskill-timeout: expected a number of seconds above 0, got 'soon'",
        ),
        (
            ["--upskill-model=oracle", "--upskill-binding=pybind"],
            "*--upskill-binding: invalid choice: 'pybind'*",
        ),
    ],
)
def test_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_a_bad_skill_is_a_usage_error_before_any_test(pytester: pytest.Pytester) -> None:
    skill = pytester.mkdir("Bad_Skill")
    (skill / "SKILL.md").write_text("---\nname: Bad_Skill\ndescription: d\n---\nbody\n")
    pytester.makepyfile("def test_x(): raise AssertionError")
    result = pytester.runpytest("--upskill-model=oracle", "--upskill-skill=Bad_Skill")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --upskill-skill: *Bad_Skill/SKILL.md: field 'name' must be lowercase letters*"]
    )
    result.stdout.no_fnmatch_line("*test_x*")


def test_oracle_skips_a_task_without_reference(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.upskill("Write a kernel.", backend="cpu")
        def test_kernel(kernel):
            raise AssertionError("must not run")
        """
    )
    result = pytester.runpytest("-rs", "--upskill-model=oracle")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["SKIPPED *the oracle model needs a known-good project*"])


def test_marker_mistakes_are_collection_errors(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_no_fixture="""
        import pytest

        @pytest.mark.upskill("Write a kernel.")
        def test_kernel():
            pass
        """,
        test_bad_backend="""
        import pytest

        @pytest.mark.upskill("Write a kernel.", backend="rocm")
        def test_kernel(kernel):
            pass
        """,
        test_bad_reference="""
        import pytest

        @pytest.mark.upskill("Write a kernel.", reference="missing")
        def test_kernel(kernel):
            pass
        """,
    )
    result = pytester.runpytest("--upskill-model=oracle")
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines_random(
        [
            "*test_kernel: a test marked upskill must ask for the `kernel` or `upskill_sample` fixture",
            "*test_kernel: @pytest.mark.upskill: backend Input should be 'cuda' or 'cpu'",
            "*test_kernel: @pytest.mark.upskill: reference */missing is not a directory",
        ]
    )
    result.stdout.no_fnmatch_line("*During handling*")
    result.stdout.no_fnmatch_line("*pytest_upskill/*")


def test_task_text_from_a_markdown_file(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    (pytester.path / "task.md").write_text("Softmax of each row.\n")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.upskill("task.md", name="row_softmax", backend="cpu", reference="solutions/row_softmax")
        def test_prompt(upskill_sample):
            assert upskill_sample.prompt.user == "Softmax of each row."
            assert upskill_sample.reply.startswith("```toml build.toml")
            assert (upskill_sample.model, upskill_sample.condition, upskill_sample.index) == ("oracle", "baseline", 0)
        """
    )
    result = pytester.runpytest("--upskill-model=oracle", *upskill_args)
    result.assert_outcomes(passed=1)


def test_kernel_outside_an_upskill_test_fails_clearly(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_kernel(kernel): pass")
    result = pytester.runpytest("--upskill-model=oracle")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*the kernel and upskill_sample fixtures are for tests marked*"])


def test_xdist_workers_bring_their_records_to_the_controller(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    skill = Path(__file__).resolve().parents[1] / "examples" / "skills" / "cpu-kernels"
    args = ["--upskill-model=oracle", f"--upskill-skill={skill}", "--upskill-samples=3"]
    serial = pytester.runpytest(*args, *upskill_args, "--upskill-report=serial.json")
    parallel = pytester.runpytest(*args, *upskill_args, "-n", "2", "--upskill-report=parallel.json")
    parallel.assert_outcomes(passed=6)
    parallel.stdout.fnmatch_lines(
        [
            "created: 2/2 workers",
            "oracle*baseline*3/3*100%*",
            "lift oracle cpu-kernels vs baseline: +0 pts [[]-*, +*[]] over 1 test x 3 samples: no evidence of lift; one test: no inference beyond it",
        ]
    )

    def outcomes(
        name: str,
    ) -> tuple[list[tuple[str, str]], list[dict[str, Any]], list[dict[str, Any]]]:
        report = json.loads((pytester.path / name).read_text())
        samples = sorted((s["nodeid"], s["outcome"]) for s in report["samples"])
        # Latency is measured, not aggregated: it differs between any two runs.
        summary = [
            {k: v for k, v in row.items() if k != "mean_latency_s"} for row in report["summary"]
        ]
        return samples, summary, report["lift"]

    assert serial.ret == parallel.ret == 0
    assert outcomes("serial.json") == outcomes("parallel.json")
    assert len(outcomes("serial.json")[2]) == 1


def test_the_build_directory_is_never_collected(pytester: pytest.Pytester) -> None:
    # A built project keeps the model's files, tests included.
    pytester.makepyfile(
        test_plain="def test_plain(): pass",
        **{"builds/relu-0123/src/tests/test_generated": "def test_generated(): assert False"},
    )
    pytester.runpytest().assert_outcomes(passed=1, failed=1)  # collectable when not a build dir
    pytester.runpytest("--upskill-build-dir=builds").assert_outcomes(passed=1)
    pytester.makeini("[pytest]\nupskill_build_dir = builds\n")
    pytester.runpytest().assert_outcomes(passed=1)  # no model asked for: still not collected


def test_a_sample_that_kills_its_xdist_worker_still_has_a_record(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    crash = ROW_SOFTMAX_TEST.replace(
        "def test_row_softmax(kernel):",
        "def test_crash(kernel):\n    import os, signal; os.kill(os.getpid(), signal.SIGSEGV)",
    )
    pytester.makepyfile(crash + ROW_SOFTMAX_TEST)
    result = pytester.runpytest(
        "-n",
        "2",
        "--upskill-model=oracle",
        "--upskill-isolation=off",  # the test body runs in the worker, as it does for --pdb
        "--upskill-report=r.json",
        *upskill_args,
    )
    result.assert_outcomes(failed=1, passed=1)
    samples = {s["test"]: s for s in json.loads((pytester.path / "r.json").read_text())["samples"]}
    crashed = samples["test_crash"]
    assert (crashed["outcome"], crashed["stage"], crashed["model"], crashed["condition"]) == (
        "failed",
        "check",
        "oracle",
        "baseline",
    )
    assert "worker died" in crashed["reason"]
    assert samples["test_row_softmax"]["outcome"] == "passed"
    result.stdout.fnmatch_lines(["oracle*baseline*1/2*"])


def test_markdown_junit_properties_and_gates(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    skill = Path(__file__).resolve().parents[1] / "examples" / "skills" / "cpu-kernels"
    result = pytester.runpytest(
        "-n",
        "2",
        "--upskill-model=oracle",
        f"--upskill-skill={skill}",
        "--upskill-samples=2",
        "--upskill-markdown=summary.md",
        "--junitxml=junit.xml",
        "--upskill-min-lift=0.1",
        *upskill_args,
    )
    result.assert_outcomes(passed=4)
    # Every test passed, but the skill does not lift the pass rate by 10 points.
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "upskill gate failed: oracle cpu-kernels: lift +0%, whose 95% interval's lower "
            "bound -*% is under --upskill-min-lift=0.1"
        ]
    )
    markdown = (pytester.path / "summary.md").read_text()
    assert "| oracle | cpu-kernels | 2/2 | 100% |" in markdown
    assert "- lift oracle cpu-kernels vs baseline: +0 pts [" in markdown
    assert "**gate failed**: oracle cpu-kernels\\: lift \\+0\\%" in markdown  # escaped
    junit = ElementTree.parse(pytester.path / "junit.xml").getroot()
    properties = [
        {p.get("name"): p.get("value") for p in case.iter("property")}
        for case in junit.iter("testcase")
    ]
    assert sorted((p["upskill_condition"], p["upskill_sample"]) for p in properties) == [
        ("baseline", "0"),
        ("baseline", "1"),
        ("cpu-kernels", "0"),
        ("cpu-kernels", "1"),
    ]
    assert {(p["upskill_model"], p["upskill_outcome"], p["upskill_stage"]) for p in properties} == {
        ("oracle", "passed", "check")
    }


INTERRUPTED_SUITE = (
    ROW_SOFTMAX_TEST
    + """

def test_z_slow(tmp_path_factory):
    import pathlib, time
    pathlib.Path("started").write_text("")
    time.sleep(60)
"""
)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_session_still_writes_its_reports(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str], signum: int
) -> None:
    pytester.makepyfile(INTERRUPTED_SUITE)
    process = subprocess.Popen(
        [
            *INTERRUPTIBLE_PYTEST,
            "--upskill-model=oracle",
            "--upskill-report=r.json",
            "--upskill-markdown=r.md",
            *upskill_args,
        ],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (pytester.path / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        process.send_signal(signum)
        output, _ = process.communicate(timeout=30)
    finally:  # a session that did not end is not left to the next tests
        process.kill()
        process.communicate()
    assert process.returncode == pytest.ExitCode.INTERRUPTED, output
    (sample,) = json.loads((pytester.path / "r.json").read_text())["samples"]
    assert (sample["test"], sample["outcome"]) == ("test_row_softmax", "passed")
    assert "| oracle | baseline | 1/1 |" in (pytester.path / "r.md").read_text()
