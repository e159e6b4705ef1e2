"""The client of one ``push`` run: VTEX with the credentials of the options, the environment
or an accounts file, or an embedded FakeOMS (``--fake``); and which stores it can reach."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

import attrs

from vtex_tracking import Accounts, AsyncTrackingClient, RetryPolicy
from vtex_tracking.testing import FakeAccount, FakeOMS

from ._checks import build_checks
from ._report import Console

__all__ = ["has_registry", "open_client"]


class _AnySecret(Mapping[str, str]):
    """An environment in which every variable is set: ``--fake`` reads an accounts file for
    its store names and limits only, without the secrets its ``*_env`` keys point to (the
    fake stores get test credentials of their own)."""

    def __getitem__(self, name: str) -> str:
        return "not-a-secret"

    def __iter__(self) -> Any:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __contains__(self, name: object) -> bool:
        return True


def has_registry(args: argparse.Namespace) -> bool:
    """Whether the run has many stores (``--accounts`` or ``VTEX_ACCOUNTS``)."""
    return bool(args.accounts or os.environ.get("VTEX_ACCOUNTS", ""))


def _registry(args: argparse.Namespace) -> Accounts | None:
    """The stores of this run: ``--accounts FILE``, else ``VTEX_ACCOUNTS`` (with the
    ``VTEX_<NAME>_*`` variables), else None (one store)."""
    listed = os.environ.get("VTEX_ACCOUNTS", "")
    if args.accounts:
        registry = Accounts.from_toml(args.accounts, environ=_AnySecret() if args.fake else None)
    elif listed and args.fake:  # the store names only: the fake stores make their own keys
        names = [name.strip() for name in listed.split(",") if name.strip()]
        registry = Accounts.from_mapping({n: {"app_key": "-", "app_token": "-"} for n in names})
    elif listed:
        registry = Accounts.from_env()
    else:
        return None
    if args.base_url:  # every store goes there (a proxy, a fake server)
        moved = {name: attrs.evolve(a, base_url=args.base_url) for name, a in registry.items()}
        registry = Accounts(moved)
    return registry


@contextlib.asynccontextmanager
async def open_client(
    args: argparse.Namespace, console: Console
) -> AsyncIterator[AsyncTrackingClient]:
    """The client for this run: VTEX (credentials from options or environment; other stores
    from ``--accounts``) or, with ``--fake``, an embedded FakeOMS with test credentials.
    Raises ``ConfigurationError`` for missing credentials or a bad accounts file."""
    settings: dict[str, Any] = {
        "retry": RetryPolicy(max_attempts=args.max_attempts),
        "checks": build_checks(args),
    }
    if args.trust_env:
        settings["trust_env"] = True
    if args.allow_insecure_http:
        settings["allow_insecure_http"] = True
    shared_pace = args.shared_pace or os.environ.get("VTEX_SHARED_PACE")
    if shared_pace:
        settings["shared_pace"] = shared_pace
    if args.limits_file and not args.fake:
        settings["limits_file"] = args.limits_file  # a fake server's limits vouch for nothing
    if args.concurrency is not None:
        settings["max_concurrency"] = args.concurrency
    if args.timeout is not None:
        settings["timeout"] = args.timeout
    registry = _registry(args)
    default = args.account or os.environ.get("VTEX_ACCOUNT_NAME") or None
    if args.fake:
        async with _fake(registry, default, settings, console) as client:
            yield client
        return
    if registry is not None and (default is None or default in registry):
        client = AsyncTrackingClient.from_accounts(registry, default=default, **settings)
        async with client:
            yield client
        return
    options = dict(settings, accounts=registry)
    for option, name in (
        ("account", "account_name"),
        ("environment", "environment"),
        ("app_key", "app_key"),
        ("app_token", "app_token"),
        ("user_token", "user_token"),
        ("base_url", "base_url"),
    ):
        value = getattr(args, option)
        if value:
            options[name] = value
    async with AsyncTrackingClient.from_env(**options) as client:
        yield client


@contextlib.asynccontextmanager
async def _fake(
    registry: Accounts | None, default: str | None, settings: dict[str, Any], console: Console
) -> AsyncIterator[AsyncTrackingClient]:
    """``--fake``: an embedded FakeOMS; with an accounts file, one fake store per account
    (test credentials, answering 429 past the account's ``rate_limit`` as VTEX would)."""
    if registry is None:
        async with FakeOMS() as oms, AsyncTrackingClient(
            "fake", oms.app_key, oms.app_token, base_url=oms.url, **settings
        ) as client:
            console.note(f"--fake: pushing to an embedded fake VTEX at {oms.url}, not to VTEX.")
            yield client
        return
    names = list(registry) + ([default] if default and default not in registry else [])
    limits = {name: registry.get(name) for name in names}
    stores = {
        name: FakeAccount(
            f"vtexappkey-{name}-fake",
            f"fake-token-{name}",
            account.rate_limit if account is not None else None,
        )
        for name, account in limits.items()
    }
    async with FakeOMS(accounts=stores) as oms:
        fakes = Accounts.from_mapping(
            {
                name: {
                    "app_key": store.app_key,
                    "app_token": store.app_token,
                    "base_url": oms.url,
                    "rate_limit": getattr(limits[name], "rate_limit", None),
                    "max_concurrency": getattr(limits[name], "max_concurrency", None),
                }
                for name, store in stores.items()
            }
        )
        async with AsyncTrackingClient.from_accounts(
            fakes, default=default, **settings
        ) as client:
            console.note(
                f"--fake: pushing to {len(stores)} fake stores at {oms.url}, not to VTEX."
            )
            yield client
