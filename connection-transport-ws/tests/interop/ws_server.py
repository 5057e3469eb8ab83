"""Echo server on the Python `websockets` package, for the interop tests in ../interop.rs.

Binds 127.0.0.1 on a free port and prints the port alone on a line on stdout. Exits when
its stdin closes, so a test that dies (and drops its end of the pipe) never leaves it
running.

Per connection:
- text and binary messages are echoed back unchanged (up to --max-size bytes);
- the text "close:CODE:REASON" makes the server close with that code and reason;
- the text "ping" makes the server send a ping, wait for the client's pong and answer
  "pong:SECONDS" with the measured round trip;
- the text "latency" answers "latency:SECONDS", websockets' keepalive round trip
  (0 until a keepalive ping has been answered).
Keepalive pings go out every --ping-interval seconds (websockets answers client pings
itself).
"""

import argparse
import asyncio
import sys

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


async def handler(ws):
    try:
        async for message in ws:
            if isinstance(message, str):
                if message.startswith("close:"):
                    _, code, reason = message.split(":", 2)
                    await ws.close(int(code), reason)
                    return
                if message == "ping":
                    pong = await ws.ping()
                    latency = await pong
                    await ws.send(f"pong:{latency}")
                    continue
                if message == "latency":
                    await ws.send(f"latency:{ws.latency}")
                    continue
            await ws.send(message)
    except ConnectionClosed:
        pass


async def wait_for_stdin_eof():
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    while await reader.read(4096):
        pass


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-size", type=int, default=16 * 1024 * 1024)
    parser.add_argument("--ping-interval", type=float, default=20.0)
    parser.add_argument("--ping-timeout", type=float, default=20.0)
    args = parser.parse_args()
    async with serve(
        handler,
        "127.0.0.1",
        0,
        max_size=args.max_size,
        ping_interval=args.ping_interval,
        ping_timeout=args.ping_timeout,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(port, flush=True)
        await wait_for_stdin_eof()


if __name__ == "__main__":
    asyncio.run(main())
