"""A third-party peer for connection-transport-tcp's interop tests: Python's asyncio
(and its ssl module, OpenSSL underneath), standard library only.

Usage: echo_server.py CERT.pem KEY.pem
Prints "<plain port> <tls port> <lines port>" on one line, then serves on 127.0.0.1
until stdin closes:

- plain and TLS ports: frames with a 4-byte big-endian length prefix, echoed; the
  frame b"BIG" is answered with a prefix claiming 4 GiB (and nothing more), the frame
  b"HALF" with half a frame and then a close.
- lines port: newline-terminated lines, echoed in upper case.
"""

import asyncio
import ssl
import struct
import sys


async def frames(reader, writer):
    try:
        while True:
            head = await reader.readexactly(4)
            (n,) = struct.unpack(">I", head)
            body = await reader.readexactly(n)
            if body == b"BIG":
                writer.write(struct.pack(">I", 0xFFFFFFFF))
                await writer.drain()
                continue
            if body == b"HALF":
                writer.write(struct.pack(">I", 100) + b"x" * 50)
                await writer.drain()
                break
            writer.write(head + body)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def lines(reader, writer):
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            writer.write(line.upper())
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main():
    cert, key = sys.argv[1], sys.argv[2]
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    plain = await asyncio.start_server(frames, "127.0.0.1", 0)
    tls = await asyncio.start_server(frames, "127.0.0.1", 0, ssl=ctx)
    text = await asyncio.start_server(lines, "127.0.0.1", 0)
    ports = [s.sockets[0].getsockname()[1] for s in (plain, tls, text)]
    print(" ".join(map(str, ports)), flush=True)
    loop = asyncio.get_running_loop()
    # Exit when the test closes our stdin (or dies).
    await loop.run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main())
