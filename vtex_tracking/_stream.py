"""``PushStream``: the consumer's handle on a running push (results, progress, stop, cancel).

The push itself (``_push._Engine``) runs in a plain asyncio task the stream starts on first
use; the results come through a bounded memory stream, so a slow consumer slows the push
instead of growing memory.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from types import TracebackType
from typing import Protocol, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._progress import PushProgress, Tally
from ._public import present_lazy
from ._reports import PushResult, PushSummary


class PushRun(Protocol):
    """What the stream needs of the engine it drives."""

    progress: PushProgress
    unfinished: list[PushResult]

    async def run(self, results: MemoryObjectSendStream[PushResult]) -> None:
        """Push everything, sending one result per item into ``results``; then close it."""

    def stop(self) -> None:
        """Stop sending; every item read still gets a result."""


T = TypeVar("T")

#: Most results ``summary()`` takes from the stream at once.
_SUMMARY_BATCH = 256
#: Seconds between cancellations of a push's engine that has not ended yet (``aclose``).
_CANCEL_AGAIN_AFTER = 0.1


# anyio's receive() always passes a checkpoint (an extra event-loop turn), even when a result
# is ready: take it without waiting when there is one.
async def receive_fast(stream: MemoryObjectReceiveStream[T]) -> T:
    try:
        return stream.receive_nowait()
    except anyio.WouldBlock:
        return await stream.receive()


class PushStream:
    """The results of ``AsyncTrackingClient.push``, in completion order, one per input item.

    Iterate it with ``async for``. ``progress`` has live counters. ``stop()`` stops sending and
    lets the iteration finish with a result for every item already read. Leaving the loop early
    (``break``) or ``aclose()`` cancels in-flight requests at once; results nobody received are
    then in ``unfinished``. ``summary()`` totals every result the stream delivered, so it may be
    called during or after the loop (the stream keeps the failed results for it).
    """

    def __init__(self, engine: PushRun, buffer: int) -> None:
        self._engine = engine
        self._send, self._receive = anyio.create_memory_object_stream[PushResult](buffer)
        self._task: asyncio.Task[None] | None = None
        self._started_at: float | None = None
        self._tally = Tally(engine.progress)

    @property
    def progress(self) -> PushProgress:
        """Live counters: read, queued, in flight, succeeded, failed, send rate, rate limit."""
        return self._engine.progress

    @property
    def unfinished(self) -> list[PushResult]:
        """Results the consumer never received (cancelled pushes, early exits)."""
        return self._engine.unfinished

    def _start(self) -> None:
        if self._task is None:
            self._engine.progress.started_at = time.monotonic()
            # A plain asyncio task, not a task group: the consumer may leave the `async for`
            # at any point, and an async iterator cannot hold a task group open across
            # iterations. The task is cancelled when the stream is closed or collected.
            self._task = asyncio.get_running_loop().create_task(self._engine.run(self._send))
            weakref.finalize(self, _cancel_task, self._task)

    def __aiter__(self) -> PushStream:
        return self

    async def __anext__(self) -> PushResult:
        if self._task is None:  # started once: no call per result after that
            self._start()
        try:
            result = await receive_fast(self._receive)
        except anyio.EndOfStream:
            await self._join()
            raise StopAsyncIteration from None
        except anyio.ClosedResourceError:  # iterated again after the end, or after aclose()
            raise StopAsyncIteration from None
        self._tally.add(result)
        return result

    async def next_batch(self, max_items: int) -> list[PushResult]:
        """Wait for at least one result, then take up to ``max_items`` already available;
        an empty list means the push is over. (The sync facade uses this to cross the
        threads once per batch instead of once per result.)"""
        self._start()
        try:
            batch = [await receive_fast(self._receive)]
        except anyio.EndOfStream:
            await self._join()
            return []
        except anyio.ClosedResourceError:
            return []
        receive_nowait = self._receive.receive_nowait  # looked up once per batch
        for _ in range(max_items - 1):
            try:
                batch.append(receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream):
                break
        return batch

    def stop(self) -> None:
        """Stop sending; iteration goes on until every item read has its result."""
        self._engine.stop()

    async def aclose(self) -> None:
        """Cancel the push now; results not yet received go to ``unfinished``."""
        # Results already produced but not received are unfinished too.
        while True:
            try:
                self._engine.unfinished.append(self._receive.receive_nowait())
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
        # Nobody listens any more: from now on the engine keeps each result as unfinished
        # instead of waiting to hand it over. The cancel below cannot be relied on for that:
        # on Python 3.10 an anyio task group that a stop() has just cancelled swallows it too.
        self._receive.close()
        task = self._task
        # Cancelled again until it ends, as anyio delivers its own cancellations: before
        # Python 3.11 a cancel that reaches a task group a stop() already cancelled can be
        # absorbed there, leaving the engine waiting for nothing (seen as a rare hang on 3.10).
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=_CANCEL_AGAIN_AFTER)

    async def _join(self) -> None:
        """Wait for the engine task to end; re-raise what broke it (e.g. the input iterator)."""
        self._receive.close()
        task = self._task
        if task is None:
            return
        if not task.done():
            await asyncio.wait({task})
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            raise _single(exc)

    async def __aenter__(self) -> PushStream:
        self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def summary(self) -> PushSummary:
        """Consume the rest of the stream and return the totals of every result it delivered
        (those received in an ``async for`` before included)."""
        # In batches: one hop per batch of ready results, not one per result.
        add = self._tally.add  # looked up once, not per result
        while batch := await self.next_batch(_SUMMARY_BATCH):
            for result in batch:
                add(result)
        return self._tally.summary()

    def cancel_soon(self) -> None:
        """Cancel the push without waiting; safe from finalizers and other threads, because
        the work is handed to the stream's own event loop."""
        task = self._task
        if task is not None and not task.done():
            loop = task.get_loop()
            if not loop.is_closed():
                loop.call_soon_threadsafe(self._cancel_now)

    def _cancel_now(self) -> None:
        self._receive.close()
        if self._task is not None:
            self._task.cancel()


def _single(exc: BaseException) -> BaseException:
    # anyio task groups wrap errors in an ExceptionGroup; a lone error reads better bare.
    inner = getattr(exc, "exceptions", None)
    while inner is not None and len(inner) == 1:
        exc = inner[0]
        inner = getattr(exc, "exceptions", None)
    return exc


def _cancel_task(task: asyncio.Task[None]) -> None:
    if not task.done():
        loop = task.get_loop()
        if not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)


# Imported on first use (``_public.LAZY``): its public names get the package's name now.
present_lazy(globals())
