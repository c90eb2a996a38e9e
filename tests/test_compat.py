"""Each private part of pytest that `_compat` reaches for, on real pytest objects: a pytest
release that changes one fails here, by name, before it fails a session."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from pytest_upskill import _compat


def test_tmp_path_factory_is_the_sessions(request: pytest.FixtureRequest) -> None:
    factory = _compat.tmp_path_factory(request.config)
    assert isinstance(factory, pytest.TempPathFactory)
    assert factory is request.getfixturevalue("tmp_path_factory")


def test_redirect_basetemp_moves_tmp_path(pytester: pytest.Pytester) -> None:
    """In a session of its own: the redirection outlives the test that makes it."""
    pytester.makeconftest(
        """
        from pytest_upskill import _compat

        def pytest_runtest_setup(item):
            _compat.redirect_basetemp(item.config, item.config.rootpath / "elsewhere")
        """
    )
    pytester.makepyfile(
        """
        def test_tmp(tmp_path, pytestconfig):
            assert tmp_path.is_relative_to(pytestconfig.rootpath / "elsewhere")
        """
    )
    pytester.runpytest_inprocess().assert_outcomes(passed=1)


def test_skipped_by_marks_reads_skip_and_skipif(pytester: pytest.Pytester) -> None:
    items = pytester.getitems(
        """
        import pytest

        @pytest.mark.skip(reason="no")
        def test_skip(): pass

        @pytest.mark.skipif(True, reason="no")
        def test_skipif(): pass

        @pytest.mark.skipif(False, reason="no")
        def test_runs(): pass
        """
    )
    assert [_compat.skipped_by_marks(item) for item in items] == [True, True, False]


def test_teardown_exact_ends_what_the_next_item_does_not_need(pytester: pytest.Pytester) -> None:
    """The sandboxed path runs no fixture of an item here, yet tears down those it leaves."""
    pytester.makeconftest(
        """
        import pytest
        from pytest_upskill import _compat

        @pytest.hookimpl(tryfirst=True)
        def pytest_runtest_protocol(item, nextitem):
            if item.name == "test_second":
                _compat.teardown_exact(item, nextitem)
                print("AFTER TEARDOWN_EXACT", flush=True)
                return True
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture(scope="module")
        def resource():
            yield
            print("TORN DOWN", flush=True)

        def test_first(resource):
            pass

        def test_second():
            pass
        """
    )
    result = pytester.runpytest_inprocess("-s")
    # Torn down by the call, not by pytest at the session's end.
    result.stdout.fnmatch_lines(["*TORN DOWN*", "*AFTER TEARDOWN_EXACT*"])


def test_terminal_writer_writes_where_it_is_told(request: pytest.FixtureRequest) -> None:
    out = io.StringIO()
    writer = _compat.terminal_writer(request.config, out)
    writer.line("upskill")
    assert out.getvalue() == "upskill\n"


def test_every_part_is_tested_here() -> None:
    tested = Path(__file__).read_text()
    for name in _compat.__all__:
        assert f"_compat.{name}(" in tested, name
