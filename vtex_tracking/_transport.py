"""The HTTP layer: one pooled aiohttp session, one method to send bytes and read the answer.

Nothing VTEX-specific lives here, and nothing above this module imports aiohttp: aiohttp's
exceptions are translated to ours at one boundary (``_translate_errors``).
"""

from __future__ import annotations

import asyncio
import errno
import os
import weakref
from collections.abc import Mapping
from typing import Any, NamedTuple

import aiohttp
from yarl import URL

from . import _deadline
from ._constants import MAX_RESPONSE_BYTES, POOL_SHARE_OF_OPEN_FILES
from ._errors import ClientClosedError, ConnectError, TransportError, TransportTimeoutError

# Pools left behind by a fork or by a closed event loop: their sockets cannot be closed through
# their dead loop (and after a fork they belong to the parent). Keeping a reference stops them
# from being collected, which would warn or, worse, shut down the parent's TLS sessions.
_abandoned_pools: list[object] = []

# "Too many open files" for this process (EMFILE) or the whole system (ENFILE).
_OUT_OF_FILES = frozenset({errno.EMFILE, errno.ENFILE})


class TooManyOpenFilesError(TransportError):
    """No file descriptor was left to open a connection (EMFILE/ENFILE): the request never
    left the process. The retry loop treats it as back-pressure, not as a failed attempt."""


def open_files_limit() -> int | None:
    """This process' soft limit on open files (``RLIMIT_NOFILE``, what ``ulimit -n`` shows),
    or None where there is none to respect (Windows, or unlimited)."""
    try:
        import resource  # not on Windows, hence imported here
    except ImportError:
        return None
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY or soft <= 0 else soft


def pool_size_within(open_files: int | None, requested: int) -> int:
    """``requested`` connections, or fewer when ``open_files`` (a limit on file descriptors)
    leaves room for fewer (see ``POOL_SHARE_OF_OPEN_FILES``)."""
    if open_files is None:
        return requested
    return max(1, min(requested, int(open_files * POOL_SHARE_OF_OPEN_FILES)))


class RawResponse(NamedTuple):
    """An HTTP answer: status, headers (case-insensitive), body, and whether it was cut at
    ``MAX_RESPONSE_BYTES``."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    truncated: bool = False


def _translate_error(exc: BaseException, where: str) -> TransportError:
    """The ``TransportError`` for an aiohttp or OS error, most specific first."""
    code = _out_of_files_errno(exc)
    if code is not None:
        target = (
            f"{exc.host}:{exc.port}" if isinstance(exc, aiohttp.ClientConnectorError) else where
        )
        limit = open_files_limit()
        room = f"may have {limit} files open" if limit is not None else "has no file left"
        return TooManyOpenFilesError(
            f"cannot connect to {target}: {os.strerror(code)}; this process {room},"
            " `ulimit -n` raises the limit"
        )
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return TransportTimeoutError(f"timed out waiting for {where}")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return TransportError(
            f"TLS certificate of {exc.host} could not be verified: {exc.certificate_error}"
        )
    if isinstance(exc, aiohttp.ClientSSLError):
        return TransportError(f"TLS handshake with {where} failed: {exc}")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ConnectError(f"cannot connect to {exc.host}:{exc.port}: {exc.strerror or exc}")
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return TransportError(f"{where} closed the connection without answering")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return TransportError(f"the response from {where} was cut short: {exc}")
    if isinstance(exc, aiohttp.ClientError):
        return TransportError(f"request to {where} failed: {type(exc).__name__}: {exc}")
    return TransportError(f"request to {where} failed: {exc}")


def _out_of_files_errno(exc: BaseException) -> int | None:
    """EMFILE or ENFILE when ``exc`` (or the OS error aiohttp wrapped in it) is one, else None."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        if isinstance(current, OSError) and current.errno in _OUT_OF_FILES:
            return current.errno
        if isinstance(current, aiohttp.ClientConnectorError):
            current = current.os_error
        else:
            current = current.__cause__ or current.__context__
    return None


class Transport:
    """A connection pool to one host, bound to the event loop it was first used in.

    The session is created lazily inside the running loop (aiohttp requires it). A session
    handed in by the caller is borrowed: used, never closed.
    """

    def __init__(
        self,
        *,
        url_prefix: str,
        headers: Mapping[str, str],
        timeout: float,
        connect_timeout: float,
        pool_size: int,
        trust_env: bool = False,
        session: aiohttp.ClientSession | None = None,
        shares_pool_of: Transport | None = None,
    ) -> None:
        self._url_prefix = url_prefix
        base = URL(url_prefix)
        self._display_host = base.host or url_prefix
        # Each request's URL is the base with its path: ``with_path`` on a parsed base costs a
        # third of parsing the whole URL string again for every request.
        self._base_url = base
        self._base_path = base.raw_path.rstrip("/")
        self._headers = dict(headers)
        self._total_timeout = timeout
        self._timeout = aiohttp.ClientTimeout(
            # No total: our Deadlines bound each attempt as a whole (aiohttp's total timer
            # cost ~8 % of a request's CPU). No sock_read: the deadline already bounds reading
            # the body (tested with a trickling server), and a read timer re-armed on every
            # chunk cost ~20 us per request.
            total=None,
            sock_connect=min(connect_timeout, timeout),
        )
        self._pool_size = pool_size
        self._trust_env = trust_env
        self._borrowed = session
        # Another account's transport whose connection pool (one global budget) we use,
        # through a session of our own over its connector (see _shared_pool_session).
        self._pool_owner = shares_pool_of
        self._pool_session: aiohttp.ClientSession | None = None
        # Our own session carries our headers and timeout as defaults; a borrowed one gets
        # them with each request.
        self._per_request = session is not None
        self._request_timeout: aiohttp.ClientTimeout | Any = (
            self._timeout if self._per_request else aiohttp.helpers.sentinel
        )
        self._request_headers = self._headers if self._per_request else None
        self._session: aiohttp.ClientSession | None = session
        self._loop: asyncio.AbstractEventLoop | None = None
        # The time limits of the attempts in the session's loop (see _deadline).
        self._deadlines: _deadline.Deadlines | None = None
        self._pid = os.getpid()
        self._closed = False
        # Closes our pool when its event loop shuts down (see _close_with_loop).
        self._loop_guard: asyncio.Task[None] | None = None

    @property
    def headers(self) -> dict[str, str]:
        """The headers sent with every request (credentials included: never log them)."""
        return self._headers

    @property
    def url_prefix(self) -> str:
        """The base URL requests go to (``https://{account}.{environment}.com.br``)."""
        return self._url_prefix

    @property
    def timeout(self) -> float:
        """Seconds one attempt may take (``ClientConfig.timeout``)."""
        return self._total_timeout

    @property
    def host(self) -> str:
        """The host requests go to (for logs and traces)."""
        return self._display_host

    @property
    def closed(self) -> bool:
        """Whether ``aclose`` was called."""
        return self._closed

    def _session_for_current_loop(self, loop: asyncio.AbstractEventLoop) -> aiohttp.ClientSession:
        """The session to send with from ``loop`` (the running loop)."""
        if self._closed:
            raise ClientClosedError("this client is closed; create a new one")
        if self._pool_owner is not None:
            return self._shared_pool_session(loop)
        if self._session is not None and self._loop is loop:
            return self._session
        if self._borrowed is not None:
            self._loop = loop
            return self._borrowed
        if self._session is not None:
            if self._pid == os.getpid() and not self._loop_is_closed():
                raise ClientClosedError(
                    "this client's connection pool belongs to another, still running event"
                    " loop; create one client per event loop"
                )
            self.abandon()
        session = self._session = self._new_session(
            aiohttp.TCPConnector(limit=self._pool_size, limit_per_host=0), owned=True
        )
        self._loop = loop
        self._pid = os.getpid()
        # Weak references: a client the application dropped is not kept alive by its loop.
        self._loop_guard = loop.create_task(_close_with_loop(weakref.ref(self), session))
        # If the loop is closed without cancelling its tasks, the guard dies pending; that is
        # expected, so asyncio should not report it (what asyncio.gather does for its own).
        self._loop_guard._log_destroy_pending = False  # type: ignore[attr-defined]
        return session

    def _shared_pool_session(self, loop: asyncio.AbstractEventLoop) -> aiohttp.ClientSession:
        """Our session over the pool owner's connector: the owner's pooled connections, but
        our own headers and timeout as defaults. Sending ours with each request through the
        owner's session would not do: aiohttp adds a session's default headers to every
        request, so a store with a user token would also send the owner's app key."""
        assert self._pool_owner is not None
        pool = self._pool_owner._session_for_current_loop(loop)
        if self._session is None or self._pool_session is not pool:
            if self._session is not None:
                self._session.detach()  # the owner's new loop or process has a new pool
            assert pool.connector is not None
            self._session = self._new_session(pool.connector, owned=False)
            self._pool_session = pool
        return self._session

    def _new_session(
        self, connector: aiohttp.BaseConnector, *, owned: bool
    ) -> aiohttp.ClientSession:
        """A session over ``connector`` with our headers and timeout as its defaults."""
        return aiohttp.ClientSession(
            connector=connector,
            connector_owner=owned,
            headers=self._headers,
            timeout=self._timeout,
            trust_env=self._trust_env,
            # Keep the server's Content-Type and status as they are; we decide what they mean.
            raise_for_status=False,
            auto_decompress=True,
        )

    def _loop_is_closed(self) -> bool:
        return self._loop is None or self._loop.is_closed()

    async def put(self, path: str, body: bytes) -> RawResponse:
        """PUT ``body`` (JSON bytes) to ``url_prefix + path`` (already percent-encoded)."""
        return await self.send("PUT", path, body)

    async def send(self, method: str, path: str, body: bytes) -> RawResponse:
        """``method`` (PUT, PATCH) ``body`` (JSON bytes) to ``url_prefix + path`` (already
        percent-encoded), and read the answer (at most ``MAX_RESPONSE_BYTES``)."""
        loop = asyncio.get_running_loop()
        session = self._session_for_current_loop(loop)
        deadlines = self._deadlines
        if deadlines is None or deadlines.loop is not loop:
            deadlines = self._deadlines = _deadline.for_loop(loop)
        url = self._base_url.with_path(self._base_path + path, encoded=True)
        watch = deadlines.start(self._total_timeout)
        try:
            # Awaited, then released as ``async with`` would (``ClientResponse.__aexit__``):
            # the context manager's own coroutines cost a layer on every resumption.
            response = await session.request(
                method,
                url,
                data=body,
                # A borrowed or shared session has its own defaults: ours go with each request.
                headers=self._request_headers,
                timeout=self._request_timeout,
                # A redirect would forward the app token to another host; report it instead.
                allow_redirects=False,
            )
            try:
                length = response.content_length
                if length is not None and length <= MAX_RESPONSE_BYTES:
                    return RawResponse(response.status, response.headers, await response.read())
                data, truncated = await _read_capped(response)
                if truncated:
                    # Unread bytes remain on this connection: it cannot be reused.
                    response.close()
                return RawResponse(response.status, response.headers, data, truncated)
            finally:
                response.release()
                await response.wait_for_close()
        except asyncio.CancelledError as exc:
            if deadlines.expired(watch):
                timeout = asyncio.TimeoutError()
                raise _translate_error(timeout, f"{self._display_host}{path}") from exc
            raise
        except (asyncio.TimeoutError, aiohttp.ClientError, OSError) as exc:
            # The one place aiohttp's errors become ours.
            raise _translate_error(exc, f"{self._display_host}{path}") from exc
        finally:
            deadlines.end(watch)

    def abandon(self) -> None:
        """Forget the pool without closing it: its loop is dead, or it belongs to our parent."""
        self._loop_guard = None
        self._deadlines = None
        session, self._session = self._session, None
        if session is None or session is self._borrowed:
            return
        if self._pool_owner is not None:
            session.detach()  # the connector is the owner's to abandon
            return
        connector = session.connector
        session.detach()
        if connector is not None:
            # aiohttp has no public "forget" for a connector whose loop is gone; marking it closed
            # is what stops its finalizer from closing sockets the parent process still uses.
            connector._closed = True
        _abandoned_pools.append((session, connector))

    async def aclose(self) -> None:
        """Close the pool if we own it (idempotent)."""
        self._closed = True
        self._deadlines = None
        guard, self._loop_guard = self._loop_guard, None
        if guard is not None and not guard.done() and guard.get_loop() is _running_loop():
            guard.cancel()  # the pool is closed here; the guard has nothing left to do
        if (
            self._pool_owner is not None  # the connector is the owner's to close
            or self._pid != os.getpid()
            or self._loop is not asyncio.get_running_loop()
        ):
            self.abandon()
            return
        session, self._session = self._session, None
        if session is not None and session is not self._borrowed:
            await session.close()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


async def _close_with_loop(owner: weakref.ref[Transport], session: aiohttp.ClientSession) -> None:
    """Wait until the event loop shuts down, then close ``owner``'s pool in it.

    ``asyncio.run`` (and anyio's runners) cancel every task left when the main coroutine
    ends, and let them finish, before closing the loop: the one moment the pool's sockets can
    still be closed cleanly. So a client kept at module level and used by one ``asyncio.run``
    after another leaves no socket behind; the next run opens a pool in its own loop.
    """
    try:
        await asyncio.get_running_loop().create_future()  # never set: wait to be cancelled
    except asyncio.CancelledError:
        transport = owner()
        if transport is None:
            await session.close()  # its client was dropped unclosed: close what it left
        elif transport._session is session:
            transport._session = None
            transport._loop = None
            await session.close()
        raise


async def _read_capped(response: aiohttp.ClientResponse) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            return b"".join(chunks)[:MAX_RESPONSE_BYTES], True
    return b"".join(chunks), False
