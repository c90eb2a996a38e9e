from __future__ import annotations

from pathlib import Path

from pytest_upskill.generate.prompt import build_prompt, skill_block
from pytest_upskill.skill import load_skill
from pytest_upskill.task import Task

EXAMPLE_SKILL = Path(__file__).resolve().parents[1] / "examples" / "skills" / "cpu-kernels"


def task(backend: str = "cuda") -> Task:
    return Task.model_validate(
        {"prompt": "Write a fused LayerNorm.", "name": "layernorm", "backend": backend}
    )


def test_baseline_and_skill_prompts_differ_only_by_the_skill_block(tmp_path: Path) -> None:
    skill = load_skill(EXAMPLE_SKILL)
    baseline = build_prompt(task(), None)
    with_skill = build_prompt(task(), skill)
    block = skill_block(skill)
    assert with_skill.user == baseline.user == "Write a fused LayerNorm."
    assert with_skill.system == baseline.system + block
    assert skill.body in block
    assert skill.body not in baseline.system


def test_skill_block_lists_references(tmp_path: Path) -> None:
    directory = tmp_path / "h100-kernels"
    (directory / "references").mkdir(parents=True)
    (directory / "SKILL.md").write_text("---\nname: h100-kernels\ndescription: d\n---\nBody\n")
    (directory / "references" / "wgmma.md").write_text("secret sauce")
    block = skill_block(load_skill(directory))
    assert "- references/wgmma.md" in block
    assert "secret sauce" not in block  # listed, not inlined


def test_system_prompt_states_format_layout_backend_and_target() -> None:
    cuda = build_prompt(task("cuda"), None).system
    assert "```cpp torch-ext/torch_binding.cpp" in cuda  # the reply format, by example
    for part in ("build.toml", "kernel_src/layernorm.cu", "torch-ext/layernorm/__init__.py"):
        assert part in cuda
    assert "TORCH_LIBRARY_EXPAND(TORCH_EXTENSION_NAME, ops)" in cuda
    assert "Backend: cuda. Target: sm_90a." in cuda
    cpu = build_prompt(task("cpu"), None).system
    assert "Backend: cpu." in cpu
    assert "kernel_src/layernorm.cpp" in cpu
