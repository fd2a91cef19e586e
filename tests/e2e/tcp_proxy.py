#!/usr/bin/env python3
"""TCP forwarder for fault tests: tcp_proxy.py LISTEN_PORT TARGET_PORT [slowdown] (127.0.0.1).

Killing it makes the target look down to its clients (open connections reset,
new ones refused) while the target keeps its data; starting it again on the
same port brings the target back. With `slowdown`, it forwards nothing and
answers every request with S3's throttling error (503 SlowDown).
"""
import asyncio
import sys

LISTEN, TARGET = int(sys.argv[1]), int(sys.argv[2])
SLOWDOWN = sys.argv[3:] == ["slowdown"]
BODY = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
        b"<Message>Please reduce your request rate.</Message></Error>")


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def slow_down(client_r, client_w):
    """Answer 503 SlowDown to the first request, then close."""
    try:
        await client_r.readuntil(b"\r\n\r\n")
        client_w.write(b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
                       b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
        await client_w.drain()
    except (ConnectionError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass
    finally:
        client_w.close()


async def handle(client_r, client_w):
    if SLOWDOWN:
        await slow_down(client_r, client_w)
        return
    try:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", TARGET)
    except OSError:
        client_w.close()
        return
    await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", LISTEN, reuse_address=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
