"""``python -m tests.chaos.relay SOCKET HOST PORT``: carry each connection made to a unix socket
to ``HOST:PORT`` by TCP.

Run inside a host's network namespace, it lets the test (in the root namespace, which has no
link) reach a server on another host over the links: the socket is a file, visible from every
namespace; the TCP leg starts in the relay's namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    with contextlib.suppress(OSError):
        sink.close()


async def _carry(
    host: str, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        far_reader, far_writer = await asyncio.open_connection(host, port)
    except OSError:
        writer.close()
        return
    await asyncio.gather(_pump(reader, far_writer), _pump(far_reader, writer))


async def serve(socket_path: str, host: str, port: int) -> None:
    server = await asyncio.start_unix_server(
        lambda r, w: _carry(host, port, r, w), path=socket_path
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2], int(sys.argv[3])))
