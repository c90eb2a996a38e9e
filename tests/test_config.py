from __future__ import annotations

import pytest

from pytest_upskill.config import ModelSpec


@pytest.mark.parametrize(
    ("text", "provider", "model", "base_url"),
    [
        ("oracle", "oracle", "", None),
        ("anthropic:claude-sonnet-4-5", "anthropic", "claude-sonnet-4-5", None),
        ("openai:gpt-5-mini", "openai", "gpt-5-mini", None),
        (
            "openai:unsloth/GLM-4.7-Flash-GGUF:Q4_0@http://127.0.0.1:8080/v1",
            "openai",
            "unsloth/GLM-4.7-Flash-GGUF:Q4_0",
            "http://127.0.0.1:8080/v1",
        ),
        ("anthropic:claude@20250101", "anthropic", "claude@20250101", None),
    ],
)
def test_model_spec_parses(text: str, provider: str, model: str, base_url: str | None) -> None:
    spec = ModelSpec.parse(text)
    assert (spec.provider, spec.model, spec.base_url) == (provider, model, base_url)
    assert str(spec) == text


def test_label_leaves_out_the_base_url() -> None:
    spec = ModelSpec.parse("openai:qwen/qwen3:8b@http://127.0.0.1:8000/v1")
    assert spec.label == "openai:qwen/qwen3:8b"


@pytest.mark.parametrize(
    "text", ["gpt-4", "mistral:large", "anthropic:", "oracle:x", "anthropic:m@http://x/v1", ""]
)
def test_model_spec_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="model"):
        ModelSpec.parse(text)


def test_help_shows_every_option_with_its_default(pytester: pytest.Pytester) -> None:
    """Made from one table (`options.OPTIONS`): a help text with a bare % broke `pytest --help`."""
    from pytest_upskill.options import OPTIONS

    result = pytester.runpytest("--help")
    assert result.ret == pytest.ExitCode.OK
    text = result.stdout.str()
    for option in OPTIONS:
        assert (option.cli or option.ini or "") in text, option
    result.stdout.fnmatch_lines(
        [
            "*--upskill-samples=N*samples per test, model and condition (default 1)",
            "*--upskill-min-lift=DELTA",
            "*fail the session unless the lower bound of the 95%*",
            "*upskill_timeout (string):*",
        ]
    )
