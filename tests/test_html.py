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
