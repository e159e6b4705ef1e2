"""``--trust-env``: the push goes through the proxy of the environment's ``http_proxy``, and
without the option that variable is ignored. The proxy is a small forwarding HTTP proxy on
127.0.0.1 (a real aiohttp server in a thread): it records the absolute URL each request names,
as an HTTP proxy receives it, and forwards the request to FakeOMS."""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
import threading
from collections.abc import Iterator

import aiohttp
import pytest
from aiohttp import web

from vtex_tracking.cli import main
from vtex_tracking.testing import FakeOMS

PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


@pytest.fixture(autouse=True)
def _clean_environment(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Own directory; no proxy settings but the test's own."""
    monkeypatch.chdir(tmp_path)
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)


class Proxy:
    """A forwarding HTTP proxy: ``seen`` lists the URLs of the requests it forwarded."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.url = ""

    async def _forward(self, request: web.Request) -> web.Response:
        self.seen.append(request.raw_path)  # absolute form: http://host:port/path
        headers = {k: v for k, v in request.headers.items() if k.lower() != "proxy-connection"}
        async with (
            aiohttp.ClientSession() as session,
            session.request(
                request.method, request.raw_path, headers=headers, data=await request.read()
            ) as answer,
        ):
            return web.Response(
                status=answer.status,
                body=await answer.read(),
                content_type=answer.content_type,
            )

    @contextlib.contextmanager
    def running(self) -> Iterator[Proxy]:
        """Serve on 127.0.0.1 in a thread of its own until the block ends."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        runner = web.AppRunner(app)

        async def start() -> int:
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port: int = runner.addresses[0][1]
            return port

        port = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
        self.url = f"http://127.0.0.1:{port}"
        try:
            yield self
        finally:
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeOMS, Proxy]]:
    """The target (--base-url) and the proxy that http_proxy names."""
    with FakeOMS() as target, Proxy().running() as proxy:
        monkeypatch.setenv("VTEX_ACCOUNT_NAME", "acme")
        monkeypatch.setenv("VTEX_APP_KEY", target.app_key)
        monkeypatch.setenv("VTEX_APP_TOKEN", target.app_token)
        monkeypatch.setenv("http_proxy", proxy.url)
        yield target, proxy


def _file(tmp_path: pathlib.Path) -> str:
    event = {"city": "Recife", "state": "PE", "description": "Postado", "date": "2026-11-02"}
    path = tmp_path / "day.jsonl"
    path.write_text(
        json.dumps({"orderId": "o-1", "invoiceNumber": "NF-1", "events": [event]}) + "\n",
        encoding="utf-8",
    )
    return str(path)


def test_trust_env_sends_through_the_environment_proxy(
    servers: tuple[FakeOMS, Proxy], tmp_path: pathlib.Path
) -> None:
    """With --trust-env the update goes through the proxy named by http_proxy, which
    forwards it to the target."""
    target, proxy = servers
    assert main(["push", _file(tmp_path), "--base-url", target.url, "--trust-env", "-q"]) == 0
    assert proxy.seen == [f"{target.url}/api/oms/pvt/orders/o-1/invoice/NF-1/tracking"]
    assert len(target.accepted("o-1", "NF-1")) == 1


def test_without_trust_env_proxy_variables_are_ignored(
    servers: tuple[FakeOMS, Proxy], tmp_path: pathlib.Path
) -> None:
    """Without --trust-env (aiohttp's default) the same environment sends straight to the
    target."""
    target, proxy = servers
    assert main(["push", _file(tmp_path), "--base-url", target.url, "-q"]) == 0
    assert len(target.accepted("o-1", "NF-1")) == 1
    assert proxy.seen == []


def test_trust_env_honours_no_proxy(
    servers: tuple[FakeOMS, Proxy], tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--trust-env honours no_proxy too: a host listed there is reached directly."""
    target, proxy = servers
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    assert main(["push", _file(tmp_path), "--base-url", target.url, "--trust-env", "-q"]) == 0
    assert len(target.accepted("o-1", "NF-1")) == 1
    assert proxy.seen == []
