"""The configuration file: several backends, routes from model names."""

from __future__ import annotations

import pytest

from toktoken.config import ConfigError, Settings

from .claude_cli import run_claude
from .conftest import KEY, get, post

CONFIG = """
[backends.default]
url = "{url}"
model = "big-model"
context = 100000

[backends.small]
url = "{url}/v1"
model = "small-model"
api_key_env = "SMALL_KEY"
kind = "openai"

[[routes]]
match = "*haiku*"
backend = "small"

[[routes]]
match = "local-small"
backend = "small"
"""


@pytest.fixture
def config_path(tmp_path, backend):
    backend.serve("big-model", "small-model")
    path = tmp_path / "toktoken.toml"
    path.write_text(CONFIG.format(url=backend.url))
    return path


def test_file_describes_backends_and_routes(config_path):
    s = Settings.from_env({"TOKTOKEN_CONFIG": str(config_path), "SMALL_KEY": "sk-small"})
    assert [b.name for b in s.backends] == ["default", "small"]
    small = s.backends[1]
    assert small.api_key == "sk-small" and small.kind == "openai" and not small.url.endswith("/v1")
    assert s.backend.context == 100000
    assert [(r.pattern, r.backend) for r in s.routes] == [
        ("*haiku*", "small"),
        ("local-small", "small"),
    ]


@pytest.mark.parametrize(
    "text, named",
    [
        ('[backends.a]\nurl = "http://x"\nmodel = "m"\nurll = "typo"', "backends.a.urll"),
        ('[backends.a]\nurl = "x"\nmodel = "m"', "backends.a.url"),
        ('[backends.a]\nurl = "http://x"', "backends.a.model"),
        ('[backends.a]\nurl = "http://x"\nmodel = "m"\nkind = "tgi"', "backends.a.kind"),
        ('[backends.a]\nurl = "http://x"\nmodel = "m"\n[[routes]]\nmatch = "*"\nbackend = "b"',
         "routes[0].backend"),
        ("[backends.a\n", "valid TOML"),
        ("", "at least one [backends.NAME]"),
    ],
)  # fmt: skip
def test_file_mistakes_name_the_key(tmp_path, text, named):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"TOKTOKEN_CONFIG": str(path)})
    assert named in str(info.value) and "\n" not in str(info.value)


def test_missing_file_is_a_clear_error():
    with pytest.raises(
        ConfigError, match="TOKTOKEN_CONFIG must be the path of a readable TOML file"
    ):
        Settings.from_env({"TOKTOKEN_CONFIG": "/nonexistent/toktoken.toml"})


def test_haiku_requests_reach_the_small_backend(app_factory, backend, config_path):
    client = app_factory(TOKTOKEN_CONFIG=str(config_path), SMALL_KEY="sk-small")
    for model, upstream, key in [("claude-haiku-5-5", "small-model", "Bearer sk-small"),
                                 ("claude-opus-5-5", "big-model", None),
                                 ("LOCAL-SMALL", "small-model", "Bearer sk-small"),
                                 ("anything-else", "big-model", None)]:  # fmt: skip
        r = post(
            client,
            {"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
        )
        assert r.status_code == 200 and r.json()["model"] == model
        sent = backend.chat_requests[-1]
        assert sent.body["model"] == upstream
        assert sent.headers.get("Authorization") == key
    # count_tokens follows the same route
    assert post(client, {"model": "claude-haiku-5-5", "messages": [{"role": "user", "content": "x"}]},
                path="/v1/messages/count_tokens").status_code == 200  # fmt: skip


def test_models_lists_what_can_be_asked_for(app_factory, config_path):
    client = app_factory(TOKTOKEN_CONFIG=str(config_path), SMALL_KEY="sk-small")
    ids = [m["id"] for m in get(client, "/v1/models", headers={"x-api-key": KEY}).json()["data"]]
    assert ids[:3] == ["local-small", "big-model", "small-model"]


def test_claude_code_haiku_model_goes_to_the_small_backend(
    gateway_factory, backend, config_path, tmp_path
):
    gw = gateway_factory(TOKTOKEN_CONFIG=str(config_path), SMALL_KEY="sk-small")
    result = run_claude(gw, "hi", tmp_path, tmp_path / "home", "--model", "haiku")
    assert result["_exit"] == 0, result
    assert {r.body["model"] for r in backend.chat_requests} == {"small-model"}
