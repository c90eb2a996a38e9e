"""The HTML report, rendered for real in headless Chromium (Debian's `chromium`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from model_server import ModelServer, Received

from conftest import EXAMPLES, ROW_SOFTMAX_TEST
from pytest_upskill.extract import render_reply
from pytest_upskill.models.oracle import read_project

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
