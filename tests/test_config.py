"""Client configuration: host safety, credentials, environment variables, redaction."""

from __future__ import annotations

import pytest

from vtex_tracking import (
    AsyncTrackingClient,
    ConfigurationError,
    TrackingClient,
)

KEY, TOKEN, USER_TOKEN = "vtexappkey-acme-SECRETKEY", "SECRET-APP-TOKEN-123", "SECRET-USER-JWT"


@pytest.mark.parametrize("account", ["evil.com/x", "a@b", "a b", "", "acme.evil", "-acme", "a:1"])
def test_account_name_must_be_a_host_label(account: str) -> None:
    """Account names that could change the host are refused."""
    with pytest.raises(ConfigurationError, match="account_name"):
        AsyncTrackingClient(account, KEY, TOKEN)


@pytest.mark.parametrize("environment", ["evil.com/x", "a@b", "a b", "", "x.y"])
def test_environment_must_be_a_host_label(environment: str) -> None:
    """Environments that could change the host are refused."""
    with pytest.raises(ConfigurationError, match="environment"):
        AsyncTrackingClient("acme", KEY, TOKEN, environment=environment)


def test_default_url_is_vtex_host() -> None:
    """Without base_url the client talks HTTPS to {account}.{environment}.com.br."""
    client = AsyncTrackingClient("acme", KEY, TOKEN, environment="vtexcommercebeta")
    assert client.config.url_prefix == "https://acme.vtexcommercebeta.com.br"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "http://localhost:1/", "http://[::1]:9", "https://proxy.corp"]
)
def test_base_url_allowed(url: str) -> None:
    """HTTPS anywhere and plain HTTP to loopback are accepted."""
    assert AsyncTrackingClient("acme", KEY, TOKEN, base_url=url).config.url_prefix == url.rstrip(
        "/"
    )


def test_plain_http_to_remote_host_needs_explicit_opt_out() -> None:
    """Plain HTTP to a non-loopback host is refused unless allow_insecure_http=True."""
    with pytest.raises(ConfigurationError, match="allow_insecure_http"):
        AsyncTrackingClient("acme", KEY, TOKEN, base_url="http://proxy.corp:8080")
    client = AsyncTrackingClient(
        "acme", KEY, TOKEN, base_url="http://proxy.corp:8080", allow_insecure_http=True
    )
    assert client.config.url_prefix == "http://proxy.corp:8080"


@pytest.mark.parametrize("url", ["ftp://x", "127.0.0.1:80", "https://u:p@h", "https://h/?q=1"])
def test_malformed_base_url_is_refused(url: str) -> None:
    """base_url must be a plain absolute http(s) URL."""
    with pytest.raises(ConfigurationError, match="base_url"):
        AsyncTrackingClient("acme", KEY, TOKEN, base_url=url)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"app_key": KEY}, {"app_token": TOKEN}, {"app_key": "", "app_token": TOKEN}],
)
def test_missing_credentials_are_named(kwargs: dict[str, str]) -> None:
    """Without a key/token pair or a user token, the error names what to provide."""
    with pytest.raises(ConfigurationError) as info:
        AsyncTrackingClient("acme", **kwargs)
    assert "app_key" in str(info.value)


@pytest.mark.parametrize("kwargs", [{"timeout": -1}, {"timeout": 0}, {"max_concurrency": 0}])
def test_bad_limits_are_refused(kwargs: dict[str, float]) -> None:
    """Timeouts must be positive and concurrency at least 1."""
    with pytest.raises(ConfigurationError):
        AsyncTrackingClient("acme", KEY, TOKEN, **kwargs)  # type: ignore[arg-type]


def test_from_env_reads_vtex_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """from_env reads VTEX_* variables; keyword overrides win."""
    monkeypatch.setenv("VTEX_ACCOUNT_NAME", "acme")
    monkeypatch.setenv("VTEX_ENVIRONMENT", "vtexcommercebeta")
    monkeypatch.setenv("VTEX_APP_KEY", KEY)
    monkeypatch.setenv("VTEX_APP_TOKEN", TOKEN)
    monkeypatch.delenv("VTEX_USER_TOKEN", raising=False)
    client = AsyncTrackingClient.from_env(environment="vtexcommercestable")
    assert client.config.url_prefix == "https://acme.vtexcommercestable.com.br"
    assert client.config.credentials.app_token == TOKEN
    sync_client = TrackingClient.from_env(user_token=USER_TOKEN)
    assert sync_client.config.credentials.user_token == USER_TOKEN
    sync_client.close()


def test_from_env_names_missing_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Missing variables are listed by name in the error."""
    for name in ("VTEX_ACCOUNT_NAME", "VTEX_APP_KEY", "VTEX_APP_TOKEN", "VTEX_USER_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError) as info:
        AsyncTrackingClient.from_env()
    text = str(info.value)
    for name in ("VTEX_ACCOUNT_NAME", "VTEX_APP_KEY", "VTEX_APP_TOKEN", "VTEX_USER_TOKEN"):
        assert name in text


def test_reprs_never_show_secrets() -> None:
    """Client, config and credentials reprs redact the key, token and user token."""
    pair = AsyncTrackingClient("acme", KEY, TOKEN)
    user = TrackingClient("acme", user_token=USER_TOKEN)
    texts = [repr(pair), str(pair), repr(pair.config), repr(pair.config.credentials)]
    texts += [repr(user), repr(user.config), repr(user.config.credentials)]
    user.close()
    for text in texts:
        for secret in (KEY, TOKEN, USER_TOKEN):
            assert secret not in text
    assert "redacted" in repr(pair.config.credentials)
