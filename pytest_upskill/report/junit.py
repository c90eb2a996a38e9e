"""JUnit XML of samples, for a merged campaign (`python -m pytest_upskill merge --junitxml`):
one test case per sample, named as pytest's junitxml names it, with the properties a session
puts on each sample's test case (`record_properties`)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from ..environ import withheld_secrets
from ..paths import write_bytes_atomically
from ..sanitize import clean_text
from .results import SampleRecord

__all__ = ["record_properties", "write_junit_xml"]

# What XML 1.0 cannot hold even escaped (controls, surrogates, U+FFFE/FFFF): ElementTree
# would write them as they are, and no parser would read the file back.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ELEMENTS = {"failed": "failure", "error": "error", "skipped": "skipped"}


def record_properties(record: SampleRecord) -> list[tuple[str, object]]:
    """The `upskill_*` properties of a sample's JUnit test case."""
    return [
        ("upskill_model", record.model),
        ("upskill_condition", record.condition),
        ("upskill_sample", record.sample),
        ("upskill_outcome", record.outcome),
        ("upskill_stage", record.stage),
        ("upskill_input_tokens", record.usage.input_tokens),
        ("upskill_output_tokens", record.usage.output_tokens),
    ]


def _names(nodeid: str) -> tuple[str, str]:
    """classname and name, as pytest's junitxml makes them: the file's path dotted, without
    .py, then the classes; the name is the function with its parameters."""
    path, bracket, params = nodeid.partition("[")
    names = path.split("::")
    names[0] = re.sub(r"\.py$", "", names[0].replace("/", "."))
    names[-1] += bracket + params
    return ".".join(names[:-1]), names[-1]


def write_junit_xml(path: Path, records: list[SampleRecord]) -> None:
    """Written whole or not at all; every text from a report is cleaned (no terminal
    sequence, no secret this process holds, nothing XML cannot hold) and escaped by
    ElementTree."""
    secrets = withheld_secrets()  # one read of the environment

    def text(value: object) -> str:
        return _NOT_XML.sub("\ufffd", clean_text(str(value), secrets=secrets))

    counts = {outcome: sum(r.outcome == outcome for r in records) for outcome in _ELEMENTS}
    total_time = sum(r.latency_s for r in records)
    suites = ET.Element("testsuites")
    suite = ET.SubElement(
        suites,
        "testsuite",
        name="pytest-upskill",
        errors=str(counts["error"]),
        failures=str(counts["failed"]),
        skipped=str(counts["skipped"]),
        tests=str(len(records)),
        time=f"{total_time:.3f}",
    )
    for record in records:
        classname, name = _names(record.nodeid)
        # The time of the reply (the merge does not know how long each test ran).
        case = ET.SubElement(
            suite,
            "testcase",
            classname=text(classname),
            name=text(name),
            time=f"{record.latency_s:.3f}",
        )
        properties = ET.SubElement(case, "properties")
        for key, value in record_properties(record):
            ET.SubElement(properties, "property", name=key, value=text(value))
        element = _ELEMENTS.get(record.outcome)
        if element is not None:
            reason = text(f"upskill [{record.stage}] {record.outcome}: {record.reason}")
            ending = ET.SubElement(case, element, message=reason)
            if element == "skipped":
                ending.set("type", "pytest.skip")
            ending.text = reason
    ET.indent(suites)
    data = ET.tostring(suites, encoding="utf-8", xml_declaration=True)
    write_bytes_atomically(path, data + b"\n")
