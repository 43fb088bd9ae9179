"""Settings: precedence, parsing errors, masking; docs/configuration.md documents every variable."""

from pathlib import Path

import pytest

from worker.errors import ConfigError
from worker.settings import ENV_VARS, Settings, mask_url

CONFIG_DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


def test_flag_beats_env_beats_default(monkeypatch):
    monkeypatch.setenv("ASKBATCH_CONCURRENCY", "3")
    monkeypatch.setenv("ASKBATCH_MODEL", "from-env")
    s = Settings.load({"model": "from-flag", "provider": None}, dotenv=False)
    assert (s.concurrency, s.model, s.provider) == (3, "from-flag", "responses")


def test_dotenv_file_is_read_but_never_overrides_env(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("ASKBATCH_MODEL", "env-model")
    (tmp_path / ".env").write_text("OPENAI_API_KEY=sk-from-dotenv\nASKBATCH_MODEL=dotenv-model\n")
    s = Settings.load()
    assert s.api_key == "sk-from-dotenv" and s.model == "env-model"
    assert "sk-from-dotenv" not in repr(s) and "sk-from-dotenv" not in str(s.redacted())


def test_bad_values_name_the_variable(monkeypatch):
    monkeypatch.setenv("ASKBATCH_CONCURRENCY", "many")
    with pytest.raises(ConfigError, match="ASKBATCH_CONCURRENCY"):
        Settings.load(dotenv=False)


def test_unknown_provider_and_bad_broker(monkeypatch):
    with pytest.raises(ConfigError, match="unknown provider"):
        Settings.load({"provider": "bard"}, dotenv=False)
    with pytest.raises(ConfigError, match=r"redis://") as err:
        Settings.load({"broker_url": "amqp://u:secret@h/"}, dotenv=False)
    assert "secret" not in str(err.value)


def test_mask_url_hides_credentials_only():
    assert mask_url("rediss://:pw@host:6380/0") == "rediss://:***@host:6380/0"
    assert mask_url("redis://user:pw@h/1") == "redis://user:***@h/1"
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"
    assert mask_url("http://sk-TOKEN@host/v1?api-key=S&v=1") == "http://***@host/v1?api-key=***&v=1"
    said = "GET https://h:8080/v1?access_token=T1&Signature=T2 failed; see https://h/v1?x=1"
    assert mask_url(said) == (
        "GET https://h:8080/v1?access_token=***&Signature=*** failed; see https://h/v1?x=1"
    )


def test_a_base_url_with_userinfo_is_refused():
    with pytest.raises(ConfigError, match="user name or password") as err:
        Settings.load({"base_url": "http://user:s3cret@h/v1"}, dotenv=False)
    assert "s3cret" not in str(err.value)


def test_docs_list_every_setting():
    text = CONFIG_DOC.read_text()
    missing = [env for env in ENV_VARS.values() if f"`{env}`" not in text]
    assert not missing, f"docs/configuration.md's table lacks {missing}"
