"""The HTML report, rendered for real in headless Chromium (Debian's `chromium`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from model_server import ModelServer, Received

from conftest import EXAMPLES, ROW_SOFTMAX_TEST
from pytest_upskill.generate.providers.oracle import read_project
from pytest_upskill.project.extract import render_reply
from pytest_upskill.report import write_html_report, write_markdown_report
from pytest_upskill.report.results import SampleRecord, TurnRecord, statistics

SKILL = EXAMPLES / "skills" / "cpu-kernels"
# Prose around the files: a hostile model's attempt to run script in the reader's browser.
HOSTILE_PROSE = '<script>document.title = "pwned"</script><img src=x onerror="alert(1)">\n'


@pytest.fixture
def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("UPSKILL_REQUIRE_CHROMIUM"):
            pytest.fail("chromium is missing: apt-get install chromium")
        pytest.skip("no chromium here: apt-get install chromium")
    return found


def render(chromium: str, page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={page.parent / 'chromium-profile'}",
        "--enable-logging=stderr",
        "--v=0",
    ]
    return subprocess.run(
        [chromium, *flags, *args, page.as_uri()], capture_output=True, text=True, timeout=120
    )


def test_the_html_report_shows_the_chart_and_every_sample_in_chromium(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str], chromium: str
) -> None:
    reply = HOSTILE_PROSE + render_reply(read_project(reference))

    def answer(request: Received) -> str:
        return reply

    pytester.makepyfile(ROW_SOFTMAX_TEST)
    with ModelServer(answer=answer) as server:
        result = pytester.runpytest(
            "--upskill-model=oracle",
            f"--upskill-model=openai:m@{server.url}/v1",
            f"--upskill-skill={SKILL}",
            "--upskill-html=report/index.html",
            *upskill_args,
        )
    result.assert_outcomes(passed=4)
    page = pytester.path / "report" / "index.html"

    dom = render(chromium, page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert 'id="pass-rates"' in html
    assert html.count('class="bar"') == 4  # 2 models x 2 conditions
    assert html.count('class="whisker"') == 4
    assert html.count('<details class="sample">') == 4
    assert "project/kernel_src/row_softmax.cpp" in html
    assert "lift oracle cpu-kernels vs baseline" in html
    # The model's markup is text on the page, never an element.
    assert "<script" not in html
    assert "&lt;script&gt;document.title" in html
    assert "<title>pytest-upskill</title>" in html
    assert "CONSOLE" not in dom.stderr  # no console message, errors included

    shot = pytester.path / "report" / "shot.png"
    screenshot = render(chromium, page, f"--screenshot={shot}", "--window-size=1280,1600")
    assert screenshot.returncode == 0, screenshot.stderr[-2000:]
    assert shot.stat().st_size > 10_000


def test_two_models_three_conditions_five_samples_serial_and_parallel_agree(
    pytester: pytest.Pytester, reference: Path, upskill_args: list[str], chromium: str
) -> None:
    second = pytester.path / "skills" / "terse"
    second.mkdir(parents=True)
    (second / "SKILL.md").write_text(
        "---\nname: terse\ndescription: Answer with the files only.\n---\n\nNo prose.\n"
    )
    reply = render_reply(read_project(reference))
    pytester.makepyfile(ROW_SOFTMAX_TEST)
    with ModelServer(answer=lambda request: reply) as server:
        args = [
            f"--upskill-model=openai:small@{server.url}/v1",
            f"--upskill-model=openai:large@{server.url}/v1",
            f"--upskill-skill={SKILL}",
            f"--upskill-skill={second}",
            "--upskill-samples=5",
            *upskill_args,
        ]
        reports = ["--upskill-report=r.json", "--upskill-markdown=r.md", "--upskill-html=r.html"]
        serial = pytester.runpytest(*args, *reports)
        parallel = pytester.runpytest(*args, "-n", "2", "--upskill-report=p.json")
    serial.assert_outcomes(passed=30)
    parallel.assert_outcomes(passed=30)
    serial.stdout.fnmatch_lines(
        [
            "model*condition*passed*rate*95% CI*built*skipped*errors*mean tokens out*cost",
            "openai:small*baseline*5/5*100%*",
            "openai:large*terse*5/5*100%*",
            "",
            "lift openai:small cpu-kernels vs baseline: +0 pts [[]*[]] over 1 test x 5 samples: no evidence of lift; one test: no inference beyond it",
        ]
    )
    assert len(server.received) == 30  # every sample asked once; the parallel run replayed

    def numbers(name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        report = json.loads((pytester.path / name).read_text())
        timing = ("mean_latency_s", "mean_generation_s")  # measured, or replayed rounded
        summary = [{k: v for k, v in r.items() if k not in timing} for r in report["summary"]]
        return summary, report["lift"]

    summary, lifts = numbers("r.json")
    assert (summary, lifts) == numbers("p.json")
    assert len(summary) == 6
    assert len(lifts) == 4
    assert "| openai\\:large | terse | 5/5 |" in (pytester.path / "r.md").read_text()
    dom = render(chromium, pytester.path / "r.html", "--dump-dom").stdout
    assert dom.count('class="bar"') == 6
    assert dom.count('<details class="sample">') == 30


# A model's reply in an agent loop that tries to close the drill-down, run script, and drive
# the reader's terminal; and a tool result quoting it back.
HOSTILE_TURN = "</details></pre><script>alert(1)</script>\x1b[2J\x1b]0;pwned\x07 done"
TOLD = "[error of call-1]\nbuild failed: 'flaot' </details><script>alert(2)</script>\x1b[31m"


def _turn(turn: int, passed: bool) -> TurnRecord:
    return TurnRecord(
        turn=turn,
        stage="check" if passed else "build",
        outcome="passed" if passed else "failed",
        reason="" if passed else "error: 'flaot' was not declared",
        input_tokens=1200,
        output_tokens=300,
        latency_s=2.0,
        tool_calls=["write_file", "build", "run_tests"],
    )


def _conversation(directory: Path) -> None:
    """Three turns of one sample in tools mode, as the loop writes them: each later prompt is
    the one before, the model's reply, then what the model was told."""
    prompt = "# System\n\nYou write kernels.\n\n# User\n\nWrite row_softmax.\n"
    for turn in (1, 2, 3):
        folder = directory if turn == 1 else directory / f"turn-{turn}"
        folder.mkdir(parents=True, exist_ok=True)
        reply = f"turn {turn} {HOSTILE_TURN}\n\n[calls build({{}})]"
        (folder / "prompt.md").write_text(prompt)
        (folder / "reply.md").write_text(reply)
        prompt += f"\n# Assistant\n\n{reply}\n\n# User\n\n{TOLD} after turn {turn}\n"
    for project in ("project", "turn-2/project", "turn-2/project-2"):
        (directory / project).mkdir(parents=True)
        (directory / project / "k.cpp").write_text(f"// {project}\n")


def _turn_records(tmp_path: Path) -> list[SampleRecord]:
    """One test, two conditions, three samples each over up to 3 turns: the baseline passes by
    turn 1, 1, 3 of 3 (33%, 33%, 67%), the skill by turn 1, 2, 2 (33%, 100%, 100%)."""
    directory = tmp_path / "sample"
    _conversation(directory)
    records = []
    plan: list[tuple[str, list[int | None]]] = [
        ("baseline", [1, 3, None]),
        ("cpu-kernels", [1, 2, 2]),
    ]
    for condition, passes in plan:
        for index, passed_at in enumerate(passes):
            turns = passed_at or 3
            records.append(
                SampleRecord(
                    nodeid=f"t.py::test_k[openai:m-{condition}-{index}]",
                    test="t.py::test_k",
                    model="openai:m",
                    condition=condition,
                    sample=index,
                    outcome="failed" if passed_at is None else "passed",
                    stage="build" if passed_at is None else "check",
                    turns=turns,
                    passed_at_turn=passed_at,
                    per_turn=[_turn(t, t == passed_at) for t in range(1, turns + 1)],
                    agent="tools",
                    directory=str(directory) if (condition, index) == ("baseline", 1) else "",
                )
            )
    return records


def test_an_agent_loop_shows_its_pass_at_turn_chart_and_each_turn_in_chromium(
    tmp_path: Path, chromium: str
) -> None:
    page = tmp_path / "r.html"
    write_html_report(page, statistics(_turn_records(tmp_path)), [])
    written = page.read_text()
    assert "\x1b" not in written
    assert "\x07" not in written

    dom = render(chromium, page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert html.count('class="bar"') == 2  # the chart of pass rates stays
    assert 'id="pass-at-turn"' in html
    assert html.count('class="turn-point"') == 6  # 2 lines x 3 turns
    assert "<td>openai:m</td><td>baseline</td><td>33%</td><td>33%</td><td>67%</td>" in html
    assert "<td>openai:m</td><td>cpu-kernels</td><td>33%</td><td>100%</td><td>100%</td>" in html
    assert "openai:m cpu-kernels: turn 1 33%, turn 2 100%, turn 3 100%" in html  # the <desc>
    assert "pass@turn openai:m baseline: turn 1 33%, turn 2 33%, turn 3 67%" in html

    # The drilled-down sample: its three turns in order, each with what it was told and said.
    assert html.count('<section class="turn">') == 3
    titles = [
        "Turn 1: failed at build: error: 'flaot' was not declared; 1,200 tokens in, 300 out, "
        "2.0 s; called write_file, build, run_tests",
        "Turn 2: failed at build",
        "Turn 3: passed at check; 1,200 tokens in",
    ]
    positions = [html.index(title) for title in titles]
    assert positions == sorted(positions)
    told = "&lt;/details&gt;&lt;script&gt;alert(2)&lt;/script&gt;"
    assert (
        "<h4>turn-2/prompt.md: what the model was told</h4><pre>[error of call-1]\n"
        f"build failed: 'flaot' {told} after turn 1</pre>"
    ) in html
    assert f"build failed: 'flaot' {told} after turn 2</pre>" in html
    said = "&lt;/details&gt;&lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt; done"
    assert f"<h4>turn-3/reply.md</h4><pre>turn 3 {said}\n\n[calls build({{}})]</pre>" in html
    assert "Write row_softmax." in html  # turn 1's whole prompt
    assert "turn-2/project-2/k.cpp" in html  # the last project built
    # The replies' markup is text: no script, and the drill-downs close only where they end.
    assert "<script" not in html
    assert html.count("<details") == html.count("</details>") == 6
    assert "CONSOLE" not in dom.stderr


def test_a_session_without_turns_renders_as_before(tmp_path: Path) -> None:
    directory = tmp_path / "sample"
    (directory / "project").mkdir(parents=True)
    (directory / "prompt.md").write_text("Write it.\n")
    (directory / "reply.md").write_text("<b>here</b>\n")
    (directory / "project" / "k.cpp").write_text("// k\n")
    record = SampleRecord(
        nodeid="t.py::test_k[openai:m-baseline-0]",
        test="t.py::test_k",
        model="openai:m",
        condition="baseline",
        sample=0,
        outcome="passed",
        stage="check",
        directory=str(directory),
    )
    page = tmp_path / "r.html"
    write_html_report(page, statistics([record]), [])
    html = page.read_text()
    assert "pass-at-turn" not in html
    assert "turn" not in html.lower()
    assert "</svg>\n<h2>Summary</h2>" in html  # nothing between the chart and the tables
    assert (
        '<details class="sample"><summary class="passed">t.py::test_k[openai:m-baseline-0]: '
        "passed at check</summary>\n<h4>prompt.md</h4><pre>Write it.\n</pre>\n"
        "<h4>reply.md</h4><pre>&lt;b&gt;here&lt;/b&gt;\n</pre>\n"
        "<h4>project/k.cpp</h4><pre>// k\n</pre>\n</details>"
    ) in html


def test_the_markdown_report_lists_the_turns(tmp_path: Path) -> None:
    write_markdown_report(tmp_path / "r.md", statistics(_turn_records(tmp_path)), [])
    assert (
        "- pass@turn openai\\:m baseline: turn 1 33%, turn 2 33%, turn 3 67%"
        in (tmp_path / "r.md").read_text()
    )
