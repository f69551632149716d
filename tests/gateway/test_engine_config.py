"""The engines file (``TIERGATE_ENGINES_FILE``): every mistake is a typed error at start."""

from __future__ import annotations

import pytest

from gateway.generation.engines import EngineConfigInvalid, parse_engines


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[[engine]]\nmodel = "acme/x@1:open"\nurls = ["http://a:1"]\nport = 3\n', "unknown key"),
        ('[[engine]]\nmodel = "acme/x"\nurls = ["http://a:1"]\n', "must name a version"),
        ('[[engine]]\nmodel = "not a model"\nurls = ["http://a:1"]\n', "ORG/NAME"),
        ('[[engine]]\nmodel = "acme/x@1"\nurls = []\n', "non-empty list"),
        ('[[engine]]\nmodel = "acme/x@1"\nurls = ["ftp://a"]\n', "http(s) base URL"),
        ('[[engine]]\nmodel = "acme/x@1"\nurls = ["http://a:1", "http://a:1/"]\n', "twice"),
        (
            '[[engine]]\nmodel = "acme/x@1"\nurls = ["http://a:1"]\n'
            '[[engine]]\nmodel = "acme/x@1:open"\nurls = ["http://b:1"]\n',
            "declared twice",
        ),
        ('[[engine]]\nmodel = "acme/x@1"\nurls = ["http://a:1"]\ntimeout_s = 0\n', "timeout_s"),
        (
            '[[engine]]\nmodel = "acme/x@1"\nurls = ["http://a:1"]\napi_key_env = "NOPE"\n',
            "not set",
        ),
        ("[engines]\n", "unknown top-level"),
        ("[[engine]\n", "not valid TOML"),
    ],
)
def test_engines_file_mistakes_are_typed_errors(toml: str, message: str) -> None:
    with pytest.raises(EngineConfigInvalid) as caught:
        parse_engines(toml, environ={})
    assert message in caught.value.message
    assert caught.value.code == "engine_config_invalid"


def test_engines_file_defaults() -> None:
    [spec] = parse_engines(
        '[[engine]]\nmodel = "acme/x@1.0.0:optimized"\nurls = ["http://a:8000/"]\n'
        'api_key_env = "K"\n',
        environ={"K": "secret"},
    )
    assert (spec.repo_id, spec.version, spec.tier) == ("acme/x", "1.0.0", "optimized")
    assert spec.served_model_name == "acme/x@1.0.0:optimized"
    assert spec.urls == ("http://a:8000",)
    assert spec.api_key == "secret"
    assert "secret" not in repr(spec)
    assert spec.timeout_s == 300
