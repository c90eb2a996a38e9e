"""upskill's skills and test cases as pytest items, and several skills compared in one session."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from model_server import ModelServer, Received

from conftest import EXAMPLES, ROW_SOFTMAX_TEST
from pytest_upskill.cases import CasesInvalid, load_cases, missing_strings
from pytest_upskill.generate.prompt import build_prompt
from pytest_upskill.report.results import SampleRecord, statistics
from pytest_upskill.skill import SkillInvalid, condition_name, load_skill
from pytest_upskill.task import TextTask

CUDA_REVIEW = EXAMPLES / "skills" / "cuda-review"
KEY = "sk-loopback"


def report(pytester: pytest.Pytester) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads((pytester.path / "r.json").read_text())
    return parsed


def expected_strings(user: str, cases: list[dict[str, Any]]) -> list[str]:
    """The `contains` strings of the case whose input starts the user message."""
    (case,) = [c for c in cases if user.startswith(c["input"])]
    contains = case["expected"]["contains"]
    return [contains] if isinstance(contains, str) else list(contains)


def answers_with_skill(cases: list[dict[str, Any]], marker: str) -> ModelServer:
    """A model that knows the answers only when `marker` is in its system prompt."""

    def answer(request: Received) -> str:
        if marker not in request.system:
            return "Looks fine to me."
        # Upper case: upskill checks ignoring case, and so must we.
        return "Findings: " + "; ".join(s.upper() for s in expected_strings(request.user, cases))

    return ModelServer(answer=answer)


def test_the_examples_skill_runs_with_and_without_it_through_a_loopback_model(
    pytester: pytest.Pytester, upskill_args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    skill = pytester.path / "skills" / "cuda-review"
    shutil.copytree(CUDA_REVIEW, skill)
    cases = json.loads((skill / "skill_meta.json").read_text())["tests"]
    assert len(cases) == 3
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    with answers_with_skill(cases, '<skill name="cuda-review">') as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        result = pytester.runpytest(
            "--upskill-model=anthropic:claude-loopback",
            "--upskill-report=r.json",
            "--upskill-markdown=r.md",
            "--upskill-html=r.html",
            "-v",
            *upskill_args,
        )
    result.assert_outcomes(passed=3, failed=3)
    result.stdout.fnmatch_lines(
        [
            "upskill: models anthropic:claude-loopback; conditions baseline; 1 sample(s) each",
            "upskill: upskill cases bring the condition(s) cuda-review, each for its own cases",
            "skills/cuda-review/skill_meta.json::test_cuda_review_0[[]anthropic:claude-loopback-baseline-0[]] FAILED*",
            "skills/cuda-review/skill_meta.json::test_cuda_review_0[[]anthropic:claude-loopback-cuda-review-0[]] PASSED*",
            "*the reply lacks 2 of 2 expected string(s): 'coalesc', 'shared memory'",
            "anthropic:claude-loopback  baseline     0/3     0% *",
            "anthropic:claude-loopback  cuda-review  3/3     100% *",
            "lift anthropic:claude-loopback cuda-review vs baseline: +100 pts [[]+*",
            "context anthropic:claude-loopback cuda-review: skill block ~* tokens (estimated: characters / 4); input tokens * baseline (+*, as the model counted)",
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")

    # What the model was sent: upskill's user message, the same system prompt plus the skill.
    assert len(server.received) == 6
    for request in server.received:
        case = next(c for c in cases if request.user.startswith(c["input"]))
        for name, content in case.get("context", {}).get("files", {}).items():
            assert f"\n\n```{name}\n{content}\n```" in request.user
    systems = {r.system for r in server.received if "<skill" not in r.system}
    assert len(systems) == 1  # one baseline system prompt
    (baseline_system,) = systems
    with_skill = [r for r in server.received if "<skill" in r.system]
    for request in with_skill:
        assert request.system.startswith(baseline_system)
        assert "- references/h100-checklist.md" in request.system
        # The reference's content comes only with the case whose input names it.
        named = "references/h100-checklist.md" in request.user
        assert ("132 SMs" in request.system) is named

    data = report(pytester)
    conditions = {(row["condition"], row["passed"], row["n"]) for row in data["summary"]}
    assert conditions == {("baseline", 0, 3), ("cuda-review", 3, 3)}
    (lift,) = data["lift"]
    assert (lift["skill"], lift["lift"], lift["evidence"]) == ("cuda-review", 1.0, True)
    assert data["comparisons"] == []
    rows = {row["condition"]: row for row in data["summary"]}
    assert rows["baseline"]["mean_skill_tokens_estimate"] == 0
    assert rows["cuda-review"]["mean_skill_tokens_estimate"] > 300
    assert {s["stage"] for s in data["samples"]} == {"check"}
    markdown = (pytester.path / "r.md").read_text()
    # Markdown escapes the names (a hostile one reads as text).
    assert "| anthropic\\:claude-loopback | cuda-review | 3/3 |" in markdown
    assert "- lift anthropic\\:claude-loopback cuda-review vs baseline: +100 pts" in markdown
    html = (pytester.path / "r.html").read_text()
    assert "Skill against skill" not in html
    assert "Findings: COALESC" in html  # the reply, in the sample's drill-down


def write_good_pr(root: Path, cases: list[dict[str, Any]]) -> Path:
    """A skill with the shape of upskill's own sample (skills/write-good-pr in
    huggingface/upskill): SKILL.md with name and description, and the skill_meta.json upskill
    writes, its `metadata` included. The text is ours."""
    skill = root / "skills" / "write-good-pr"
    skill.mkdir(parents=True)
    (skill / "SKILL.md").write_text(
        "---\nname: write-good-pr\ndescription: Write pull requests that reviewers can review "
        "quickly.\n---\n\n# Pull requests\n\nTitle: `<type>: summary`. Body sections: What, Why, "
        "How, Testing. Link the issue with `Closes #N`.\n"
    )
    meta = {
        "metadata": {
            "version": "1.0",
            "generated_by": "kimi",
            "generated_at": "2026-01-22T13:10:30.193750Z",
            "source_task": "write a good pr",
            "test_pass_rate": 1.0,
            "license": None,
            "compatibility": None,
        },
        "tests": cases,
    }
    (skill / "skill_meta.json").write_text(json.dumps(meta, indent=2))
    return skill


PR_CASES: list[dict[str, Any]] = [
    {
        "input": "Write the PR description for the change in retry.py.",
        "context": {"files": {"retry.py": "def retry(f, n=3):\n    ...\n"}},
        "expected": {"contains": ["## Why", "## Testing"]},
    },
    {"input": "Give a PR title for a fix of a null dereference.", "expected": {"contains": "fix:"}},
]


def test_upskills_sample_skill_shape_runs_through_the_openai_sdk(
    pytester: pytest.Pytester, upskill_args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    write_good_pr(pytester.path, PR_CASES)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with answers_with_skill(PR_CASES, '<skill name="write-good-pr">') as server:
        args = [f"--upskill-model=openai:gpt-loopback@{server.url}/v1", "--upskill-samples=2"]
        result = pytester.runpytest(*args, "--upskill-report=r.json", *upskill_args)
    result.assert_outcomes(passed=4, failed=4)
    result.stdout.fnmatch_lines(
        [
            "openai:gpt-loopback  baseline       0/4     0% *",
            "openai:gpt-loopback  write-good-pr  4/4     100% *",
        ]
    )
    assert len(server.received) == 8  # 2 cases x 2 conditions x 2 samples, each asked once
    data = report(pytester)
    tests = {s["test"] for s in data["samples"]}
    assert tests == {"test_write_good_pr_0", "test_write_good_pr_1"}
    assert {s["condition"] for s in data["samples"]} == {"baseline", "write-good-pr"}


def test_a_skill_meta_without_tests_collects_nothing(
    pytester: pytest.Pytester, upskill_args: list[str]
) -> None:
    # upskill's own write-good-pr ships `"tests": []`: no item, no error.
    write_good_pr(pytester.path, [])
    result = pytester.runpytest("--upskill-model=oracle", *upskill_args)
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_a_tests_file_named_by_option_and_the_oracle_self_test(
    pytester: pytest.Pytester, upskill_args: list[str]
) -> None:
    skill = write_good_pr(pytester.path, [])
    # upskill's `--tests` file: {"cases": [...]}, here beside the skill and out of the tests path.
    (skill / "tests.json").write_text(json.dumps({"cases": PR_CASES}))
    (pytester.path / "plain").mkdir()
    (pytester.path / "plain" / "test_plain.py").write_text("def test_plain(): pass\n")
    result = pytester.runpytest(
        "plain",
        "--upskill-model=oracle",
        f"--upskill-cases={skill / 'tests.json'}",
        "--upskill-report=r.json",
        *upskill_args,
    )
    # The oracle answers with the expected strings: the harness runs with no key.
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["oracle  baseline       2/2  *", "oracle  write-good-pr  2/2  *"])


def test_without_a_model_cases_skip_and_validators_are_upskills_own(
    pytester: pytest.Pytester, upskill_args: list[str]
) -> None:
    cases = [*PR_CASES, {**PR_CASES[1], "validator": "hf_eval_yaml", "output_file": "x.yaml"}]
    write_good_pr(pytester.path, cases)
    result = pytester.runpytest("-rs", *upskill_args)
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines(["*no upskill model configured*"])
    result = pytester.runpytest("-rs", "--upskill-model=oracle", *upskill_args)
    result.assert_outcomes(passed=4, skipped=2)
    result.stdout.fnmatch_lines(["*upskill's validator 'hf_eval_yaml' runs in upskill's own*"])


def test_validation_errors_name_the_file_the_case_and_the_field(
    pytester: pytest.Pytester, upskill_args: list[str]
) -> None:
    bad = [
        PR_CASES[0],
        {"name": "no_expected", "input": "Write a PR."},
        {"input": "x", "expected": {"contains": [1]}, "inputs": "typo"},
    ]
    write_good_pr(pytester.path, bad)
    result = pytester.runpytest("--upskill-model=oracle", *upskill_args)
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        [
            "*skill_meta.json: tests[[]1[]] (no_expected): field 'expected' is required",
            "*skill_meta.json: tests[[]2[]]: field 'expected.contains[[]0[]]' input should be a valid string",
            "*skill_meta.json: tests[[]2[]]: field 'inputs' is not a field of an upskill test case",
        ]
    )
    result.stdout.no_fnmatch_line("*Traceback*")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON: Expecting property name enclosed in double quotes (line 1)"),
        ('{"tests": 3}', "field 'tests' must be a list of test cases"),
        ('[{"input": "", "expected": {"contains": []}}]', "case 0: field 'input' string should"),
    ],
)
def test_load_cases_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "skill_meta.json"
    path.write_text(text)
    with pytest.raises(CasesInvalid, match=r"skill_meta\.json: ") as error:
        load_cases(path)
    assert message in str(error.value)


def test_contains_ignores_case_as_upskill_does() -> None:
    assert missing_strings("Use __SYNCTHREADS() to avoid the Race", ("__syncthreads", "race")) == []
    assert missing_strings("nothing", ("a", "Nothing", "x")) == ["a", "x"]


def versions(root: Path, source: Path) -> list[Path]:
    """Two versions of one skill, same name, in folders v1 and v2; v2 says one line more."""
    copies = []
    for version in ("v1", "v2"):
        copy = root / version / source.name
        shutil.copytree(source, copy)
        copies.append(copy)
    skill_md = copies[1] / "SKILL.md"
    skill_md.write_text(skill_md.read_text() + "\nVERSION 2: name every finding.\n")
    return copies


def test_two_versions_of_one_skill_and_the_baseline_on_upskill_cases(
    pytester: pytest.Pytester, upskill_args: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    v1, v2 = versions(pytester.path / "skills", CUDA_REVIEW)
    cases = json.loads((CUDA_REVIEW / "skill_meta.json").read_text())["tests"]
    for copy in (v1, v2):  # the cases come from a file of their own, owned by no skill
        (copy / "skill_meta.json").unlink()
    (pytester.path / "cases.json").write_text(json.dumps(cases))
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with answers_with_skill(cases, "VERSION 2") as server:
        result = pytester.runpytest(
            f"--upskill-model=openai:m@{server.url}/v1",
            f"--upskill-skill={v1}",
            f"--upskill-skill={v2}",
            "--upskill-cases=cases.json",
            "--upskill-samples=2",
            "--upskill-report=r.json",
            "--upskill-markdown=r.md",
            "--upskill-html=r.html",
            *upskill_args,
        )
    result.assert_outcomes(passed=6, failed=12)
    result.stdout.fnmatch_lines(
        [
            "upskill: models openai:m@*; conditions baseline, cuda-review@v1, cuda-review@v2; 2 sample(s) each",
            "openai:m  baseline        0/6     0% *",
            "openai:m  cuda-review@v1  0/6     0% *",
            "openai:m  cuda-review@v2  6/6     100% *",
            "lift openai:m cuda-review@v1 vs baseline: +0 pts [[]-*, +*[]] over 3 tests x 2 samples*no evidence of lift*",
            # Three tests are too few to show a lift over tasks, whatever the samples say.
            "lift openai:m cuda-review@v2 vs baseline: +100 pts [[]*, +100[]] over 3 tests x 2 samples*no evidence of lift*",
            "compare openai:m cuda-review@v2 vs cuda-review@v1: +100 pts [[]*, +100[]]*",
        ]
    )
    data = report(pytester)
    assert [row["condition"] for row in data["summary"]] == [
        "baseline",
        "cuda-review@v1",
        "cuda-review@v2",
    ]
    assert [(row["skill"], row["lift"]) for row in data["lift"]] == [
        ("cuda-review@v1", 0.0),
        ("cuda-review@v2", 1.0),
    ]
    (comparison,) = data["comparisons"]
    assert comparison["first"] == "cuda-review@v1"
    assert comparison["second"] == "cuda-review@v2"
    # 100% against 0% on each of three tests, twice each: three tests are too few to show a
    # difference over tasks (t on two degrees of freedom).
    assert (comparison["difference"], comparison["evidence"]) == (1.0, False)
    assert comparison["ci_low"] < 0 < comparison["ci_high"] == 1.0
    assert (
        "- compare openai\\:m cuda-review\\@v2 vs cuda-review\\@v1: +100 pts"
        in (pytester.path / "r.md").read_text()
    )
    assert (
        "compare openai:m cuda-review@v2 vs cuda-review@v1"
        in (pytester.path / "r.html").read_text()
    )


def test_two_versions_of_one_skill_on_a_kernel_test(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str]
) -> None:
    v1, v2 = versions(pytester.path / "skills", EXAMPLES / "skills" / "cpu-kernels")
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    result = pytester.runpytest(
        "-v",
        "--upskill-model=oracle",
        f"--upskill-skill={v1}",
        f"--upskill-skill={v2}",
        "--upskill-report=r.json",
        *upskill_args,
    )
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "*test_row_softmax[[]oracle-cpu-kernels@v2-0[]] PASSED*",
            "oracle  baseline        1/1  *",
            "oracle  cpu-kernels@v1  1/1  *",
            "oracle  cpu-kernels@v2  1/1  *",
            "lift oracle cpu-kernels@v1 vs baseline: +0 pts *",
            "lift oracle cpu-kernels@v2 vs baseline: +0 pts *",
            "compare oracle cpu-kernels@v2 vs cpu-kernels@v1: +0 pts [[]*[]]*no evidence of a difference*",
        ]
    )
    assert len(report(pytester)["comparisons"]) == 1


def test_lift_counts_only_the_tests_both_conditions_ran() -> None:
    def record(test: str, condition: str, outcome: str) -> SampleRecord:
        return SampleRecord.model_validate(
            {
                "nodeid": f"x::{test}[{condition}]",
                "test": test,
                "model": "m",
                "condition": condition,
                "sample": 0,
                "outcome": outcome,
                "stage": "check",
            }
        )

    # The kernel test ran only under the baseline; the skill owns the case.
    records = [
        record("kernel", "baseline", "passed"),
        record("case", "baseline", "failed"),
        record("case", "skill", "passed"),
    ]
    (lift,) = statistics(records).lift
    assert (lift.baseline_rate, lift.skill_rate, lift.lift) == (0.0, 1.0, 1.0)


def test_references_are_listed_and_inlined_when_asked(tmp_path: Path) -> None:
    skill = load_skill(CUDA_REVIEW)
    task = TextTask(name="t", prompt="Review this kernel.", contains=("x",), source=tmp_path)
    baseline = build_prompt(task, None)
    listed = build_prompt(task, skill)
    assert baseline.skill_chars == 0
    assert listed.system.startswith(baseline.system)
    assert listed.skill_chars == len(listed.system) - len(baseline.system)
    assert "- references/h100-checklist.md (content not included)" in listed.system
    assert "132 SMs" not in listed.system
    inline = build_prompt(task, skill, "inline")
    assert '<reference path="references/h100-checklist.md">' in inline.system
    assert "132 SMs" in inline.system
    assert (
        inline.skill_tokens_estimate == (inline.skill_chars + 3) // 4 > listed.skill_tokens_estimate
    )


def test_the_references_option_and_its_ini_twin(
    pytester: pytest.Pytester, upskill_args: list[str]
) -> None:
    shutil.copytree(CUDA_REVIEW, pytester.path / "cuda-review")
    costs = []
    for how in (
        [],
        ["--upskill-skill-references=inline"],
        ["-o", "upskill_skill_references=inline"],
    ):
        result = pytester.runpytest(
            "--upskill-model=oracle", "--upskill-report=r.json", *how, *upskill_args
        )
        result.assert_outcomes(passed=6)
        (row,) = [r for r in report(pytester)["summary"] if r["condition"] == "cuda-review"]
        costs.append(row["mean_skill_tokens_estimate"])
    assert costs[0] < costs[1] == costs[2]
    result = pytester.runpytest("--upskill-model=oracle", "--upskill-skill-references=all")
    result.stderr.fnmatch_lines(["*--upskill-skill-references: invalid choice: 'all'*"])


def test_skills_that_share_a_name_are_named_after_their_folder(tmp_path: Path) -> None:
    v1, v2 = versions(tmp_path, CUDA_REVIEW)
    first, second = load_skill(v1), load_skill(v2)
    assert condition_name(first, {"baseline": None}) == "cuda-review"
    assert condition_name(second, {"baseline": None, "cuda-review": v1}) == "cuda-review@v2"
    taken: dict[str, Path | None] = {"cuda-review": v1, "cuda-review@v2": v2}
    with pytest.raises(SkillInvalid, match="put versions of one skill in folders"):
        condition_name(second, taken)
