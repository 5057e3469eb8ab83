"""An event-stream server on aiohttp (a third-party HTTP server), for the interop test.

Binds 127.0.0.1 on a free port, prints the port on stdout, and exits when its stdin
closes (so a test process that dies does not leave it behind).

GET or POST /events streams events numbered from one past the request's Last-Event-ID
(1 without one): "id: N" and "data: event N" (a POST's body is echoed in each event's
data), after a "retry" field and a comment. Query parameters:
  drop_after=K  after K whole events, write half of the next one and drop the
                connection (abortively, mid-event)
  total=T       event T is the last: a request resuming after it gets 204 No Content
"""

import asyncio
import sys

from aiohttp import web


async def events(request):
    last = request.headers.get("Last-Event-ID")
    start = int(last) + 1 if last else 1
    total = int(request.query.get("total", "1000000"))
    drop_after = int(request.query.get("drop_after", "0"))
    if start > total:
        return web.Response(status=204)
    body = (await request.text()) if request.method == "POST" else ""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    await response.write(b"retry: 20\n: resumed after " + (last or "nothing").encode() + b"\n\n")
    sent = 0
    for n in range(start, total + 1):
        data = f"event {n}" + (f" {body}" if body else "")
        if drop_after and sent == drop_after:
            await response.write(f"id: {n}\ndata: {data[:3]}".encode())
            await asyncio.sleep(0.01)
            request.transport.abort()
            return response
        await response.write(f"id: {n}\ndata: {data}\n\n".encode())
        sent += 1
        await asyncio.sleep(0)
    # Everything sent: end the response cleanly; the client reconnects and gets 204.
    await response.write_eof()
    return response


async def main():
    app = web.Application()
    app.router.add_route("GET", "/events", events)
    app.router.add_route("POST", "/events", events)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    print(port, flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
