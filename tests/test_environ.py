"""The environment generated code gets, read while pytest changes it in another thread."""

from __future__ import annotations

import os
import threading
import time

from pytest_upskill.environ import passed_environ, withheld_secrets


def test_the_environment_reads_whole_while_pytest_changes_it() -> None:
    """Replies arrive in threads while pytest sets and deletes PYTEST_CURRENT_TEST: a reader
    that iterated os.environ raised KeyError about once in 150 reads, failing that sample."""
    done = threading.Event()

    def flip() -> None:
        while not done.is_set():
            os.environ["UPSKILL_TEST_FLIPPING"] = "x"
            del os.environ["UPSKILL_TEST_FLIPPING"]

    flipper = threading.Thread(target=flip)
    flipper.start()
    reads = 0
    try:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            withheld_secrets()
            passed_environ()
            reads += 1
    finally:
        done.set()
        flipper.join()
    assert reads > 1000
