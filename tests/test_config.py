from __future__ import annotations

import re

import pytest

from pytest_upskill.config import ModelSpec, distinct


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
        (
            "small=openai:smollm2@http://127.0.0.1:8080/v1",
            "openai",
            "smollm2",
            "http://127.0.0.1:8080/v1",
        ),
        ("mine=oracle", "oracle", "", None),
    ],
)
def test_model_spec_parses(text: str, provider: str, model: str, base_url: str | None) -> None:
    spec = ModelSpec.parse(text)
    assert (spec.provider, spec.model, spec.base_url) == (provider, model, base_url)
    assert str(spec) == text


def test_label_leaves_out_the_base_url() -> None:
    spec = ModelSpec.parse("openai:qwen/qwen3:8b@http://127.0.0.1:8000/v1")
    assert spec.label == "openai:qwen/qwen3:8b"


def test_models_that_differ_only_by_base_url_get_labels_of_their_own() -> None:
    specs = [
        "openai:smollm2@http://127.0.0.1:8080/v1",
        "openai:smollm2@http://user:pw@127.0.0.1:8081/v1",  # no password in a label
        "openai:gpt-5",
        "small=openai:smollm2@http://127.0.0.1:9000/v1",
    ]
    labels = [spec.label for spec in distinct(tuple(map(ModelSpec.parse, specs)))]
    assert labels == [
        "openai:smollm2@127.0.0.1:8080",
        "openai:smollm2@127.0.0.1:8081",
        "openai:gpt-5",
        "small",
    ]


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (
            ["openai:m@http://a:1/v1", "openai:m@http://a:1/v2"],
            "openai:m@http://a:1/v1 and openai:m@http://a:1/v2 would both be labelled "
            "'openai:m@a:1': name them apart, as NAME=SPEC",
        ),
        (
            ["x=openai:m", "x=anthropic:m"],
            "x=openai:m and x=anthropic:m would both be labelled 'x'",
        ),
        (
            ["oracle", "oracle=openai:m"],
            "oracle and oracle=openai:m would both be labelled 'oracle'",
        ),
        (["x=openai:m", "y=openai:m"], "x=openai:m and y=openai:m are one model: give it once"),
    ],
)
def test_a_label_clash_that_remains_names_both_specs(specs: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        distinct(tuple(map(ModelSpec.parse, specs)))


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
