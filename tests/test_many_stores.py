"""Many stores in one client and one push: routing, credentials, isolation, the registry."""

from __future__ import annotations

import collections
import datetime as dt
import gc
import os
import pathlib
import time
import tracemalloc
import warnings

import attrs
import pytest

from vtex_tracking import (
    Accounts,
    AsyncTrackingClient,
    ConfigurationError,
    PushStoppedError,
    RetryPolicy,
    TrackingClient,
    TrackingEvent,
    TrackingStatus,
    TrackingUpdate,
    ValidationError,
)
from vtex_tracking.testing import FakeAccount, FakeOMS

from .conftest import APP_KEY, APP_TOKEN, ClientFactory

pytestmark = pytest.mark.anyio

STATUS = TrackingStatus([TrackingEvent("Recife", "PE", "Postado", dt.date(2026, 11, 2))])
RETRY = RetryPolicy(max_attempts=4, initial_backoff=0.001, max_backoff=0.01)
SECRET = "SECRET-TOKEN-FROM-ENV-7c1d"


def _stores(names: list[str], **options: object) -> dict[str, FakeAccount]:
    return {n: FakeAccount(f"vtexappkey-{n}", f"token-{n}", **options) for n in names}  # type: ignore[arg-type]


def _registry(oms: FakeOMS, **overrides: dict[str, object]) -> Accounts:
    return Accounts.from_mapping(
        {
            name: {"app_key": a.app_key, "app_token": a.app_token, "base_url": oms.url}
            | overrides.get(name, {})
            for name, a in oms.accounts.items()
        }
    )


async def test_each_update_goes_to_its_store_with_its_credentials(
    make_client: ClientFactory
) -> None:
    """Single calls and a mixed push: every request carries its own store's key, and
    updates without an account go to the client's own."""
    async with FakeOMS(accounts=_stores(["acme", "globex"])) as oms:  # noqa: SIM117
        async with make_client(oms, "hub", accounts=_registry(oms)) as client:
            await client.update_tracking_status("o-a", "1", STATUS, account_name="acme")
            await client.update_tracking_status("o-h", "1", STATUS)
            updates = [
                TrackingUpdate(f"p-{i}", "1", STATUS, account_name=["acme", "globex", None][i % 3])
                for i in range(30)
            ]
            summary = await client.push_all(updates)
    by_order = {r.order_id: r.account for r in oms.requests}
    assert by_order["o-a"] == "acme" and by_order["o-h"] is None
    for i in range(30):
        assert by_order[f"p-{i}"] == ["acme", "globex", None][i % 3]
    assert summary.succeeded == 30
    assert {n: a.total for n, a in summary.by_account.items()} == {
        "acme": 10,
        "globex": 10,
        "hub": 10,
    }


async def test_a_store_without_credentials_is_that_items_failure(
    make_client: ClientFactory
) -> None:
    """An update for an unknown store fails alone, sent nowhere; a single call raises."""
    async with (
        FakeOMS(accounts=_stores(["acme"])) as oms,
        make_client(oms, "hub", accounts=_registry(oms)) as client,
    ):
        updates = [TrackingUpdate("o-1", "1", STATUS, account_name="nobody")] + [
            TrackingUpdate(f"o-{i}", "1", STATUS, account_name="acme") for i in range(2, 5)
        ]
        results = sorted([r async for r in client.push(updates)], key=lambda r: r.index)
        with pytest.raises(ConfigurationError, match="no credentials for account 'nobody'"):
            await client.update_tracking_status("x", "1", STATUS, account_name="nobody")
    assert isinstance(results[0].error, ConfigurationError)
    assert "no credentials for account 'nobody'" in str(results[0].error)
    assert results[0].account == "nobody"
    assert all(r.ok for r in results[1:])
    assert all(r.order_id != "o-1" for r in oms.requests)


async def test_a_throttled_store_does_not_slow_the_others(make_client: ClientFactory) -> None:
    """One store limited to 5 requests/s, two unlimited: the fast ones finish long before
    the slow one, whose Retry-After pauses only itself."""
    stores = _stores(["slow"], rate_limit=5, burst=2) | _stores(["fast1", "fast2"])
    async with FakeOMS(accounts=stores, retry_after="1") as oms:  # noqa: SIM117
        async with make_client(oms, "hub", accounts=_registry(oms), max_concurrency=8) as client:
            updates = [
                TrackingUpdate(
                    f"o-{i}", "1", STATUS, account_name=["slow", "fast1", "fast2"][i % 3]
                )
                for i in range(60)
            ]
            started = time.monotonic()
            done_at: dict[str, float] = {}
            async with client.push(updates) as stream:
                async for result in stream:
                    assert result.ok, result.error
                    assert result.account is not None
                    done_at[result.account] = time.monotonic() - started
                summary = await stream.summary()
    assert done_at["fast1"] < 1.5 and done_at["fast2"] < 1.5
    assert done_at["slow"] > 2.5  # 20 updates at 5/s after a burst of 2
    assert summary.by_account["slow"].throttled > 0
    assert summary.by_account["fast1"].throttled == 0


async def test_a_revoked_key_stops_only_its_store(make_client: ClientFactory) -> None:
    """A store whose key is refused sends a handful of requests; its other updates are
    reported as not sent, and the other stores finish."""
    stores = _stores(["revoked"], revoked=True) | _stores(["ok1", "ok2"])
    async with (
        FakeOMS(accounts=stores) as oms,
        make_client(oms, "hub", accounts=_registry(oms)) as client,
    ):
        updates = [
            TrackingUpdate(f"o-{i}", "1", STATUS, account_name=["revoked", "ok1", "ok2"][i % 3])
            for i in range(90)
        ]
        summary = await client.push_all(updates)
    revoked_requests = [r for r in oms.requests if r.account == "revoked"]
    assert len(revoked_requests) <= 5
    assert summary.by_account["ok1"].succeeded == 30 and summary.by_account["ok2"].succeeded == 30
    assert summary.by_account["revoked"].failed == 30
    assert summary.by_account["revoked"].stopped == "auth"
    stopped = [f for f in summary.failures if isinstance(f.error, PushStoppedError)]
    assert len(stopped) >= 30 - 5
    assert all("'revoked'" in str(f.error) for f in stopped if not f.error.in_flight)  # type: ignore[union-attr]


async def test_same_ids_in_two_stores_are_two_invoices_each_in_order(
    make_client: ClientFactory
) -> None:
    """Order per invoice holds within a store; the same ids in another store do not wait."""
    async with FakeOMS(accounts=_stores(["a", "b"]), latency=0.01) as oms:  # noqa: SIM117
        async with make_client(oms, "hub", accounts=_registry(oms)) as client:
            updates = []
            for step in range(5):
                status = TrackingStatus(
                    [
                        TrackingEvent("Recife", "PE", f"passo {n}", dt.date(2026, 11, 2))
                        for n in range(step + 1)
                    ]
                )
                for store in ("a", "b"):
                    updates.append(TrackingUpdate("o-1", "NF-1", status, account_name=store))
            summary = await client.push_all(updates)
    assert summary.succeeded == 10
    for store in ("a", "b"):
        sent = [len(r.json()["events"]) for r in oms.requests if r.account == store]
        assert sent == [1, 2, 3, 4, 5]
    # The two stores' copies overlapped in time (no cross-store waiting) at least once.
    assert oms.overlaps > 0


async def test_one_store_cannot_fill_the_read_ahead(make_client: ClientFactory) -> None:
    """A slow store's buffer is bounded (half the read-ahead): reading pauses and the
    progress names the bottleneck; everything still ends with a result."""
    stores = _stores(["slow"], rate_limit=20, burst=1) | _stores(["fast"])
    async with (
        FakeOMS(accounts=stores) as oms,
        make_client(oms, "hub", accounts=_registry(oms)) as client,
    ):
        updates = [TrackingUpdate(f"s-{i}", "1", STATUS, account_name="slow") for i in range(30)]
        updates += [TrackingUpdate(f"f-{i}", "1", STATUS, account_name="fast") for i in range(10)]
        seen_bottleneck = set()
        async with client.push(updates, read_ahead=8) as stream:
            async for _ in stream:
                if stream.progress.bottleneck:
                    seen_bottleneck.add(stream.progress.bottleneck)
                assert stream.progress.accounts["slow"].buffered <= 4
            summary = await stream.summary()
    assert summary.succeeded == 40
    assert seen_bottleneck == {"slow"}


def test_sync_client_routes_by_account() -> None:
    """TrackingClient sends an update naming a store to that store."""
    with FakeOMS(accounts=_stores(["acme"])) as oms, TrackingClient(
        "hub", APP_KEY, APP_TOKEN, base_url=oms.url, accounts=_registry(oms)
    ) as client:
        client.update_tracking_status("o-1", "1", STATUS, account_name="acme")
    assert oms.requests[0].account == "acme"


# -- the registry --------------------------------------------------------------------------------


def test_registry_from_mapping_env_and_toml(tmp_path: pathlib.Path) -> None:
    """A registry reads from VTEX_ACCOUNTS variables and TOML, and its reprs hide secrets."""
    env = {"ACME_TOKEN": SECRET, "VTEX_ACCOUNTS": "acme,globex-br"}
    env |= {"VTEX_ACME_APP_KEY": "k-acme", "VTEX_ACME_APP_TOKEN": SECRET}
    env |= {"VTEX_GLOBEX_BR_USER_TOKEN": SECRET, "VTEX_GLOBEX_BR_RATE_LIMIT": "50"}
    from_env = Accounts.from_env(env)
    assert sorted(from_env) == ["acme", "globex-br"]
    assert from_env["globex-br"].rate_limit == 50.0
    assert from_env["globex-br"].credentials.user_token == SECRET

    path = tmp_path / "stores.toml"
    path.write_text(
        '[acme]\napp_key = "k-acme"\napp_token_env = "ACME_TOKEN"\nrate_limit = 50\n'
        'max_concurrency = 4\n\n[globex]\nuser_token_env = "ACME_TOKEN"\n'
        'environment = "vtexcommercebeta"\n'
    )
    os.chmod(path, 0o644)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no inline secret: no warning even if readable
        accounts = Accounts.from_toml(path, environ=env)
    assert accounts["acme"].credentials.app_token == SECRET
    assert (accounts["acme"].rate_limit, accounts["acme"].max_concurrency) == (50.0, 4)
    assert accounts["globex"].environment == "vtexcommercebeta"
    texts = [repr(accounts), repr(accounts["acme"]), repr(from_env), str(dict(accounts))]
    assert not any(SECRET in t for t in texts)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[acme]\napp_key = "k"\napp_token_env = "MISSING_VAR"\n',
            ":3: acme: app_token_env: the environment variable MISSING_VAR is not set",
        ),
        (
            '[acme]\napp_key = "k"\napp_token = "t"\nrate_limt = 5\n',
            ":4: acme: rate_limt: unknown key",
        ),
        ('[acme]\napp_key = "k"\n', ":1: acme: needs app_key and app_token"),
        (
            '[acme]\napp_key = "k"\napp_token = "t"\nrate_limit = -1\n',
            ":4: acme: rate_limit: expected a number > 0",
        ),
        ('[a.b]\napp_key = "k"\n', "a: b: unknown key"),
        ("[acme\n", "not valid TOML"),
    ],
)
def test_bad_registry_files_say_where(tmp_path: pathlib.Path, text: str, message: str) -> None:
    """A bad TOML registry fails naming the file, line, account and key at fault."""
    path = tmp_path / "stores.toml"
    path.write_text(text)
    with pytest.raises(ConfigurationError) as info:
        Accounts.from_toml(path, environ={})
    assert message in str(info.value)
    assert str(info.value).startswith(str(path))


def test_inline_secret_in_a_readable_file_warns(tmp_path: pathlib.Path) -> None:
    """An app_token written in a file others can read is warned about, without the token."""
    path = tmp_path / "stores.toml"
    path.write_text(f'[acme]\napp_key = "k"\napp_token = "{SECRET}"\n')
    os.chmod(path, 0o644)
    with pytest.warns(UserWarning, match="chmod 600") as caught:
        Accounts.from_toml(path)
    assert SECRET not in str(caught[0].message)
    os.chmod(path, 0o600)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Accounts.from_toml(path)


def test_account_names_are_validated() -> None:
    """An account name that is not a host-name label is refused on updates and registries."""
    with pytest.raises(ValidationError, match="account_name"):
        TrackingUpdate("o", "1", STATUS, account_name="evil.example.com/")
    with pytest.raises(ConfigurationError, match="not a VTEX account name"):
        Accounts.from_mapping({"bad name": {"app_key": "k", "app_token": "t"}})


async def test_secrets_from_env_references_appear_in_no_output(
    caplog: pytest.LogCaptureFixture,
    make_client: ClientFactory,
) -> None:
    """Tokens read through ``app_token_env`` stay out of reprs, errors, results and logs,
    including a refused key's auth stop and an unknown store."""
    caplog.set_level("DEBUG")
    stores = {
        "acme": FakeAccount("vtexappkey-acme", SECRET),
        "gone": FakeAccount("vtexappkey-gone", SECRET + "-GONE", revoked=True),
    }
    async with FakeOMS(accounts=stores) as oms:
        env = {"ACME": SECRET, "GONE": SECRET + "-GONE"}
        accounts = Accounts.from_mapping(
            {
                name: {"app_key": f"vtexappkey-{name}", "app_token_env": name.upper()}
                | {"base_url": oms.url}
                for name in ("acme", "gone")
            },
            environ=env,
        )
        oms.fail_next(1, 404)
        async with make_client(oms, "hub", accounts=accounts) as client:
            updates = [
                TrackingUpdate(f"o-{i}", "1", STATUS, account_name=["acme", "gone", "nope"][i % 3])
                for i in range(12)
            ]
            results = [r async for r in client.push(updates)]
            texts = [repr(client), repr(accounts), repr(client._sender_for("acme"))]
    assert any(r.ok for r in results) and any(not r.ok for r in results)
    for result in results:
        texts += [repr(result), str(result.error), repr(result.error)]
    texts.append(caplog.text)
    assert not [t for t in texts if SECRET in t]


async def test_a_hub_client_without_a_default_store_guesses_nothing() -> None:
    """``from_accounts`` without ``default``: updates naming a store go to it; one naming
    none fails alone with ConfigurationError (push and single call), sent nowhere."""
    async with FakeOMS(accounts=_stores(["acme", "globex"])) as oms:  # noqa: SIM117
        async with AsyncTrackingClient.from_accounts(_registry(oms), retry=RETRY) as client:
            assert client.default_account is None
            updates = [
                TrackingUpdate(f"o-{i}", "1", STATUS, account_name=["acme", "globex", None][i % 3])
                for i in range(9)
            ]
            results = sorted([r async for r in client.push(updates)], key=lambda r: r.index)
            with pytest.raises(ConfigurationError, match="names no account_name"):
                await client.update_tracking_status("single", "1", STATUS)
            await client.update_tracking_status("single", "1", STATUS, account_name="globex")
    assert [r.ok for r in results] == [True, True, False] * 3
    for result in results[2::3]:
        assert isinstance(result.error, ConfigurationError) and result.account is None
    assert {r.order_id: r.account for r in oms.requests} == {
        **{f"o-{i}": ["acme", "globex"][i % 3] for i in range(9) if i % 3 != 2},
        "single": "globex",
    }


async def test_a_hub_client_with_a_default_store() -> None:
    """``from_accounts(default=...)``: updates without a store go to the default one, under
    that store's own limits from the registry (here 2 requests in flight)."""
    async with FakeOMS(accounts=_stores(["acme", "globex"]), latency=0.02) as oms:
        registry = _registry(oms, acme={"max_concurrency": 2})
        async with AsyncTrackingClient.from_accounts(
            registry, default="acme", retry=RETRY, max_concurrency=16
        ) as client:
            assert client.default_account == "acme"
            updates = (TrackingUpdate(f"o-{i}", "1", STATUS) for i in range(20))
            summary = await client.push_all(updates)
    assert summary.succeeded == 20 and set(summary.by_account) == {"acme"}
    assert {r.account for r in oms.requests} == {"acme"}
    assert oms.max_in_flight == 2


def test_from_accounts_refuses_an_unknown_default_and_an_empty_registry() -> None:
    """Mistakes in building a hub client are found at once, naming the account."""
    registry = Accounts.from_mapping({"acme": {"app_key": "k", "app_token": "t"}})
    with pytest.raises(ConfigurationError, match=r"default account 'globex'.*it has acme"):
        AsyncTrackingClient.from_accounts(registry, default="globex")
    with pytest.raises(ConfigurationError, match="registry is empty"):
        TrackingClient.from_accounts(Accounts())


def test_sync_hub_client_without_a_default_store() -> None:
    """The sync facade's ``from_accounts`` behaves the same."""
    with FakeOMS(accounts=_stores(["acme"])) as oms:  # noqa: SIM117 - the client needs oms
        with TrackingClient.from_accounts(_registry(oms), retry=RETRY) as client:
            assert client.default_account is None and client.accounts is not None
            client.update_tracking_status("o-1", "1", STATUS, account_name="acme")
            with pytest.raises(ConfigurationError, match="names no account_name"):
                client.update_tracking_status("o-2", "1", STATUS)
    assert [(r.order_id, r.account) for r in oms.requests] == [("o-1", "acme")]


async def test_a_store_request_carries_only_its_own_credentials(make_client: ClientFactory) -> None:
    """A store with a user token must not also send the home store's key pair (and the home
    store's requests none of a store's): each request has exactly one store's headers."""
    async with FakeOMS(accounts=_stores(["acme"]), user_token="globex-user-token") as oms:
        accounts = Accounts.from_mapping(
            {
                "acme": {"app_key": "vtexappkey-acme", "app_token": "token-acme"},
                "globex": {"user_token": "globex-user-token"},
            }
            | {},
        )
        accounts = Accounts(
            {n: attrs.evolve(a, base_url=oms.url) for n, a in accounts.items()}
        )
        async with make_client(oms, "hub", accounts=accounts) as client:
            for store in ("globex", None, "acme"):
                await client.update_tracking_status(f"o-{store}", "1", STATUS, account_name=store)
    headers = {r.order_id: r.headers for r in oms.requests}
    assert "X-VTEX-API-AppKey" not in headers["o-globex"]
    assert headers["o-globex"]["VtexIdclientAutCookie"] == "globex-user-token"
    assert headers["o-None"]["X-VTEX-API-AppKey"] == APP_KEY
    assert "VtexIdclientAutCookie" not in headers["o-None"]
    assert headers["o-acme"]["X-VTEX-API-AppKey"] == "vtexappkey-acme"
    assert "VtexIdclientAutCookie" not in headers["o-acme"]


async def test_a_thousand_stores_cost_little_and_idle_ones_nothing() -> None:
    """1,000 stores with 3 updates each: every store gets exactly its own, the client keeps
    a few KB per store used (measured with tracemalloc), and a later push touching two of
    the thousand sets up two stores only."""
    names = [f"s{k}" for k in range(1000)]
    async with FakeOMS(accounts=_stores(names)) as oms:  # noqa: SIM117
        async with AsyncTrackingClient.from_accounts(
            _registry(oms), retry=RETRY, max_concurrency=32
        ) as client:
            await client.push_all([TrackingUpdate("warm", "1", STATUS, account_name="s0")])
            updates = [
                TrackingUpdate(f"o-{i}", "1", STATUS, account_name=names[i % 1000])
                for i in range(3000)
            ]
            gc.collect()
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                summary = await client.push_all(updates)
                served = collections.Counter(r.account for r in oms.requests)
                oms.reset()  # the server's records of the requests are not the client's
                gc.collect()
                retained = tracemalloc.get_traced_memory()[0] - before
            finally:
                tracemalloc.stop()
            later = [TrackingUpdate(f"i-{k}", "1", STATUS, account_name=f"s{k}") for k in (7, 8)]
            stream = client.push(later)
            async with stream:
                results = [r async for r in stream]
            touched = set(stream.progress.accounts)
    assert summary.succeeded == 3000
    assert served == {name: 3 for name in names} | {"s0": 4}  # s0 had the warm-up too
    assert retained / 1000 < 16_000, f"{retained / 1000:.0f} bytes per store"
    assert all(r.ok for r in results) and touched == {"s7", "s8"}


def test_adaptive_is_a_per_account_setting_in_the_registry(tmp_path: pathlib.Path) -> None:
    """`adaptive` reads from a mapping, the environment and TOML; a bad value names the key;
    an account that sets it gets a pace without learning, the others the client's."""
    accounts = Accounts.from_mapping(
        {
            "acme": {"app_key": "k", "app_token": "t", "adaptive": False},
            "globex": {"app_key": "k", "app_token": "t"},
        }
    )
    assert accounts["acme"].adaptive is False and accounts["globex"].adaptive is None
    env = {
        "VTEX_ACCOUNTS": "acme",
        "VTEX_ACME_APP_KEY": "k",
        "VTEX_ACME_APP_TOKEN": "t",
        "VTEX_ACME_ADAPTIVE": "false",
    }
    assert Accounts.from_env(env)["acme"].adaptive is False
    toml = tmp_path / "stores.toml"
    toml.write_text('[acme]\napp_key = "k"\napp_token_env = "T"\nadaptive = "maybe"\n')
    with pytest.raises(ConfigurationError, match=r"stores.toml:4: acme: adaptive: expected true"):
        Accounts.from_toml(toml, environ={"T": "t"})
    client = AsyncTrackingClient.from_accounts(accounts, default="globex")
    assert client._sender_for("acme").pace.adaptive is None
    assert client._sender_for("globex").pace.adaptive is not None
