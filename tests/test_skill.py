from __future__ import annotations

from pathlib import Path

import pytest

from pytest_upskill.skill import SkillInvalid, load_skill

EXAMPLE_SKILL = Path(__file__).resolve().parents[1] / "examples" / "skills" / "cpu-kernels"


def make_skill(
    root: Path, front_matter: str, name: str = "h100-kernels", body: str = "Do it."
) -> Path:
    directory = root / name
    directory.mkdir()
    (directory / "SKILL.md").write_text(f"---\n{front_matter}\n---\n\n{body}\n")
    return directory


def test_example_skill_loads() -> None:
    skill = load_skill(EXAMPLE_SKILL)
    assert skill.name == "cpu-kernels"
    assert skill.front_matter.license == "Apache-2.0"
    assert skill.body.startswith("# Writing PyTorch CPU kernels")


def test_optional_fields_client_fields_and_references(tmp_path: Path) -> None:
    directory = make_skill(
        tmp_path,
        "name: h100-kernels\n"
        "description: Hopper kernels.\n"
        "compatibility: needs nvcc\n"
        "metadata:\n  author: me\n"
        "allowed-tools: Bash Read\n"
        "argument-hint: '[kernel]'\n"
        "user-invocable: true",
    )
    (directory / "references").mkdir()
    (directory / "references" / "tma.md").write_text("TMA")
    skill = load_skill(directory)
    assert skill.front_matter.allowed_tools == "Bash Read"
    assert skill.front_matter.metadata == {"author": "me"}
    assert skill.front_matter.client_fields == {"argument-hint": "[kernel]", "user-invocable": True}
    assert skill.references == ("references/tma.md",)


@pytest.mark.parametrize(
    ("front_matter", "dirname", "rule"),
    [
        ("name: H100-Kernels\ndescription: d", "H100-Kernels", "field 'name' must be lowercase"),
        ("name: h100--kernels\ndescription: d", "h100--kernels", "single hyphens"),
        ("name: -h100\ndescription: d", "-h100", "not starting or ending with a hyphen"),
        ("name: " + "a" * 65 + "\ndescription: d", "a" * 65, "at most 64 characters"),
        ("name: other\ndescription: d", "h100-kernels", "must match the directory name"),
        ("description: d", "h100-kernels", "field 'name' is required"),
        ("name: h100-kernels", "h100-kernels", "field 'description' is required"),
        ("name: h100-kernels\ndescription: ''", "h100-kernels", "at least 1 character"),
        ("name: h100-kernels\ndescription: " + "x" * 1025, "h100-kernels", "at most 1024"),
        ("name: h100-kernels\ndescription: '  '", "h100-kernels", "must not be blank"),
        ("name: h100-kernels\ndescription: [unclosed", "h100-kernels", "not valid YAML"),
        ("- a list", "h100-kernels", "must be a mapping"),
        ("name: h100-kernels\ndescription: d\nmetadata: 3", "h100-kernels", "'metadata'"),
    ],
)
def test_invalid_skills_name_the_file_and_the_rule(
    tmp_path: Path, front_matter: str, dirname: str, rule: str
) -> None:
    directory = make_skill(tmp_path, front_matter, name=dirname)
    with pytest.raises(SkillInvalid, match=rule) as excinfo:
        load_skill(directory)
    assert excinfo.value.path == directory / "SKILL.md"
    assert str(excinfo.value).startswith(str(directory / "SKILL.md"))


def test_missing_front_matter_and_missing_file(tmp_path: Path) -> None:
    directory = tmp_path / "plain"
    directory.mkdir()
    with pytest.raises(SkillInvalid, match=r"must hold SKILL\.md"):
        load_skill(directory)
    (directory / "SKILL.md").write_text("# Just markdown\n")
    with pytest.raises(SkillInvalid, match="must start with YAML front matter"):
        load_skill(directory)
    with pytest.raises(SkillInvalid, match="is not a directory"):
        load_skill(tmp_path / "nowhere")
