"""The fallback local server: a minimal aiohttp app answering every PUT with the receipt.

Run by ``_server.local_server()`` when nginx is missing. Prints its URL, then serves until
its stdin closes (the harness holds the other end) or it is terminated.
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web

from ._workload import receipt


async def _receipt(request: web.Request) -> web.Response:
    await request.read()
    order = request.match_info["order"]
    return web.Response(body=receipt(order), content_type="application/json")


async def main() -> None:
    app = web.Application()
    app.router.add_put("/api/oms/pvt/orders/{order}/{tail:.*}", _receipt)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    port = runner.addresses[0][1]
    print(f"http://127.0.0.1:{port}", flush=True)
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, sys.stdin.read)  # returns at EOF: the harness is gone
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
