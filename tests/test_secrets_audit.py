"""The secrets audit: one sweep through every code path with sentinel credentials, then a search
for the sentinels in everything a user or an operator can see.

Covered: success, retries, every error class, debug logging of the SDK and aiohttp, a server
that echoes the request headers back (as some proxies and debug endpoints do), bulk pushes with
failures and an auth stop, the sync client, the CLI with ``--verbose`` and ``--json``, the reprs
and strs of clients, configs, errors, receipts, results and summaries, and every file written.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import pathlib
import threading
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import web

from vtex_tracking import (
    APIError,
    AsyncTrackingClient,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    ConfigurationError,
    ConflictError,
    ConnectError,
    NotFoundError,
    PermissionDeniedError,
    PushStoppedError,
    RateLimitError,
    RetryPolicy,
    ServerError,
    TrackingClient,
    TrackingEvent,
    TrackingStatus,
    TrackingUpdate,
    TransportTimeoutError,
    UnexpectedResponseError,
    ValidationError,
)
from vtex_tracking.cli import main
from vtex_tracking.testing import FakeOMS

KEY = "vtexappkey-acme-SENTINELKEY4f1c"
TOKEN = "SENTINELTOKEN-9d2b7e61"
USER_TOKEN = "SENTINELUSERTOKEN-eyJhbGciOi"
WRONG_KEY = "vtexappkey-acme-SENTINELWRONGKEY"
WRONG_TOKEN = "SENTINELWRONGTOKEN-0b8a"
SENTINELS = (KEY, TOKEN, USER_TOKEN, WRONG_KEY, WRONG_TOKEN)

RETRY = RetryPolicy(max_attempts=3, initial_backoff=0.001, max_backoff=0.01)
STATUS = TrackingStatus([TrackingEvent("Recife", "PE", "Objeto postado", dt.date(2026, 11, 2))])


class Seen:
    """Everything a user could read: texts of exceptions, reprs, outputs and files."""

    def __init__(self) -> None:
        self.texts: list[tuple[str, str]] = []
        self.errors: set[type[BaseException]] = set()

    def add(self, where: str, *values: object) -> None:
        for value in values:
            self.texts.append((where, value if isinstance(value, str) else repr(value)))
            if isinstance(value, BaseException):
                self.error(where, value)

    def error(self, where: str, exc: BaseException) -> None:
        """An exception as a traceback shows it, with its attributes and its causes."""
        self.errors.add(type(exc))
        self.texts.append((where, "".join(traceback.format_exception(exc))))
        self.texts.append((where, repr(exc)))
        self.texts.append((where, repr(exc.args)))
        self.texts.append((where, repr(vars(exc))))
        for attribute in ("body", "headers", "cause"):
            if hasattr(exc, attribute):
                self.texts.append((f"{where}.{attribute}", repr(getattr(exc, attribute))))
                if isinstance(getattr(exc, attribute), bytes):
                    self.texts.append((where, getattr(exc, attribute).decode(errors="replace")))
                if isinstance(getattr(exc, attribute), BaseException):
                    self.error(f"{where}.cause", getattr(exc, attribute))

    def leaks(self) -> list[str]:
        return [
            f"{secret} in {where}: {text[:300]!r}"
            for where, text in self.texts
            for secret in SENTINELS
            if secret in text
        ]


async def _expect(seen: Seen, where: str, error: type[BaseException], call: Any) -> None:
    with pytest.raises(error) as info:
        await call
    seen.add(where, info.value)


@pytest.fixture
def echo_server() -> Iterator[str]:
    """An HTTP server that answers with the request headers in its body and its headers: what
    a debugging proxy or a misconfigured gateway does. The path's last segment picks the status."""

    async def echo(request: web.Request) -> web.Response:
        headers = dict(request.headers)
        mode = request.match_info["invoice"]
        echoed = {"X-Echo": "; ".join(f"{k}={v}" for k, v in headers.items())}
        if mode == "html":
            page = f"<html><body>login {json.dumps(headers)}</body></html>"
            return web.Response(status=200, text=page, content_type="text/html", headers=echoed)
        if mode == "receipt":  # a 2xx that echoes the request: a receipt must not keep it
            receipt = {
                "date": "2026-11-02T10:00:00.0000000+00:00",
                "orderId": request.match_info["order"],
                "receipt": "r-echo",
                "echo": headers,
            }
            return web.json_response(receipt, headers=echoed)
        if mode == "redirect":
            location = f"https://login.example/?key={headers.get('X-VTEX-API-AppKey')}"
            return web.Response(status=302, headers={"Location": location})
        body = {"error": {"code": "ECHO", "message": f"bad request {json.dumps(headers)}"}}
        status = int(mode) if mode.isdigit() else 400  # the CLI run: invoice "NF-1"
        return web.json_response(body, status=status, headers=echoed)

    app = web.Application()
    app.router.add_put("/api/oms/pvt/orders/{order}/invoice/{invoice}/tracking", echo)
    runner = web.AppRunner(app)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> int:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port: int = runner.addresses[0][1]
        return port

    port = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def test_sentinel_credentials_appear_nowhere(
    echo_server: str,
    tmp_path: pathlib.Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every path, every output: the sentinel credentials are sent to the server and shown
    nowhere else."""
    caplog.set_level(logging.DEBUG)  # the SDK's debug logs, and aiohttp's and asyncio's
    seen = Seen()
    with FakeOMS(app_key=KEY, app_token=TOKEN) as oms, FakeOMS(user_token=USER_TOKEN) as by_user:

        async def sweep_async() -> None:
            client = AsyncTrackingClient("acme", KEY, TOKEN, base_url=oms.url, retry=RETRY)
            seen.add("async client", client, str(client), client.config, str(client.config))
            async with client:
                receipt = await client.update_tracking_status("o-1", "NF-1", STATUS)
                seen.add("receipt", receipt, str(receipt))
                oms.fail_next(1, 503, headers={"Retry-After": "0"})
                oms.fail_next(1, 429, headers={"Retry-After": "0"})
                seen.add("after retries", await client.update_tracking_status("o-2", "1", STATUS))
                for status, error in [
                    (400, BadRequestError),
                    (403, PermissionDeniedError),
                    (404, NotFoundError),
                    (409, ConflictError),
                    (418, APIError),
                ]:
                    oms.fail_next(1, status)
                    await _expect(seen, f"HTTP {status}", error, client.send(_update("o-e")))
                oms.fail_next(RETRY.max_attempts, 429, headers={"Retry-After": "0"})
                await _expect(seen, "429 exhausted", RateLimitError, client.send(_update("o-r")))
                oms.fail_next(RETRY.max_attempts, 500)
                await _expect(seen, "500 exhausted", ServerError, client.send(_update("o-s")))
                oms.fail_next(1, 200, body="<html>login</html>")
                await _expect(seen, "HTML 200", UnexpectedResponseError, client.send(_update("h")))
                await _expect(
                    seen,
                    "invalid",
                    ValidationError,
                    client.update_tracking_status("", "1", STATUS),
                )
                oms.latency = 0.5
                slow = AsyncTrackingClient(
                    "acme", KEY, TOKEN, base_url=oms.url, timeout=0.1, retry=RETRY.disabled()
                )
                async with slow:
                    await _expect(seen, "timeout", TransportTimeoutError, slow.send(_update("t")))
                oms.latency = 0.0

                # Bulk: successes, invalid items, API errors, with results and a summary.
                oms.fail_next(2, 404)
                items: list[Any] = [_update(f"o-b{i}") for i in range(6)] + ["not an update"]
                async with client.push(items) as stream:
                    async for result in stream:
                        seen.add("push result", result, str(result))
                        if result.error is not None:
                            seen.add("push error", result.error)
                    summary = await stream.summary()
                seen.add("push summary", summary, str(summary), summary.failures)

            await _expect(seen, "closed", ClientClosedError, client.send(_update("c")))

            # Refused credentials: the single call, then a push that stops on them.
            wrong = AsyncTrackingClient("acme", WRONG_KEY, WRONG_TOKEN, base_url=oms.url)
            async with wrong:
                await _expect(seen, "401", AuthenticationError, wrong.send(_update("w")))
                summary = await wrong.push_all(_update(f"w-{i}") for i in range(40))
                seen.add("auth-stopped summary", summary, summary.failures)
                for failure in summary.failures:
                    assert failure.error is not None
                    seen.add("auth-stopped result", failure, failure.error)

            # A server that echoes the request headers back, in bodies, headers and a redirect.
            echo = AsyncTrackingClient("acme", KEY, TOKEN, base_url=echo_server, retry=RETRY)
            async with echo:
                for mode, error in [
                    ("400", BadRequestError),
                    ("401", AuthenticationError),
                    ("503", ServerError),
                    ("html", UnexpectedResponseError),
                    ("redirect", UnexpectedResponseError),
                ]:
                    await _expect(seen, f"echo {mode}", error, echo.send(_update("x", mode)))
                receipt = await echo.send(_update("x", "receipt"))
                assert receipt.receipt == "r-echo"
                seen.add("echo receipt", receipt, receipt.content, dict(receipt.headers))
                summary = await echo.push_all([_update("x", "400"), _update("y", "html")])
                seen.add("echo summary", summary, summary.failures)
                for failure in summary.failures:
                    assert failure.error is not None
                    seen.add("echo push error", failure.error)

            user = AsyncTrackingClient("acme", user_token=USER_TOKEN, base_url=by_user.url)
            async with user:
                seen.add("user-token receipt", await user.send(_update("u")), user, user.config)

            refused = AsyncTrackingClient("acme", KEY, TOKEN, base_url="http://127.0.0.1:9")
            async with refused:
                await _expect(seen, "refused", ConnectError, refused.send(_update("r")))

        asyncio.run(sweep_async())

        # Configuration errors never quote the value they refuse.
        with pytest.raises(ConfigurationError) as bad_config:
            AsyncTrackingClient("acme", KEY, TOKEN + "\n")
        seen.add("configuration", bad_config.value)

        # The sync client: repr, success, an error, a push with failures, close.
        sync = TrackingClient("acme", KEY, TOKEN, base_url=oms.url, retry=RETRY)
        seen.add("sync client", sync, str(sync), sync.config)
        seen.add("sync receipt", sync.send(_update("s-1")))
        oms.fail_next(1, 404)
        with pytest.raises(NotFoundError) as sync_error:
            sync.send(_update("s-2"))
        seen.add("sync error", sync_error.value)
        oms.fail_next(1, 409)
        summary = sync.push_all([_update(f"s-b{i}") for i in range(3)])
        seen.add("sync summary", summary, summary.failures)
        sync.close()

        # The CLI: verbose, JSON summary, a failures file, credentials from env and from flags.
        monkeypatch.chdir(tmp_path)
        updates = tmp_path / "updates.jsonl"
        updates.write_text(
            "".join(_jsonl(f"cli-{i}") for i in range(5)) + "not json\n", encoding="utf-8"
        )
        monkeypatch.setenv("VTEX_ACCOUNT_NAME", "acme")
        monkeypatch.setenv("VTEX_APP_KEY", KEY)
        monkeypatch.setenv("VTEX_APP_TOKEN", TOKEN)
        oms.fail_next(1, 400)
        oms.fail_next(1, 503, headers={"Retry-After": "0"})
        code = main(["push", str(updates), "--base-url", oms.url, "--verbose", "--json"])
        assert code == 1
        flags = ["--app-key", WRONG_KEY, "--app-token", WRONG_TOKEN, "--verbose", "--json"]
        wrong_code = main(
            ["push", str(updates), "--base-url", oms.url, "--failed", "wrong.jsonl", *flags]
        )
        assert wrong_code == 1
        echo_code = main(
            ["push", str(updates), "--base-url", echo_server, "--failed", "echo.jsonl", "-v"]
        )
        assert echo_code == 1

        # Proof that the sentinels were live: the servers received them.
        received = [r.headers.get("X-VTEX-API-AppToken") for r in oms.requests]
        assert TOKEN in received and WRONG_TOKEN in received
        assert by_user.requests[0].headers["VtexIdclientAutCookie"] == USER_TOKEN

    out, err = capsys.readouterr()
    seen.add("stdout", out)
    seen.add("stderr", err)
    seen.add("logs", caplog.text, *(r.getMessage() for r in caplog.records))
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    for path in files:
        seen.add(str(path), path.read_text(encoding="utf-8", errors="replace"))

    # The sweep really went everywhere it claims to.
    assert {p.name for p in files} >= {"updates.failed.jsonl", "wrong.jsonl", "echo.jsonl"}
    assert "PUT /api/oms/pvt/orders/" in caplog.text  # debug logging was on
    assert "retrying" in caplog.text and "retrying" in err
    expected = {
        APIError,
        AuthenticationError,
        BadRequestError,
        ClientClosedError,
        ConfigurationError,
        ConflictError,
        NotFoundError,
        PermissionDeniedError,
        PushStoppedError,
        RateLimitError,
        ServerError,
        ConnectError,
        TransportTimeoutError,
        UnexpectedResponseError,
        ValidationError,
    }
    assert expected <= seen.errors, expected - seen.errors
    assert seen.leaks() == []


def _update(order_id: str, invoice: str = "NF-1") -> TrackingUpdate:
    return TrackingUpdate(order_id, invoice, STATUS)


def _jsonl(order_id: str) -> str:
    event = {"city": "Recife", "state": "PE", "description": "Postado", "date": "2026-11-02"}
    doc = {"orderId": order_id, "invoiceNumber": "NF-1", "isDelivered": False, "events": [event]}
    return json.dumps(doc) + "\n"
