"""Inside an agent CLI's sandbox: carry its loopback connections to the model proxy, run it.

`python -m pytest_upskill.clients.bridge SOCKET PORT -- PROGRAM [ARGS...]` listens on
127.0.0.1:PORT of the sandbox's own network namespace, joins each connection to the Unix socket
SOCKET (the proxy's, bound in from outside), runs PROGRAM, and exits with its status. It knows
nothing but the socket: whatever PROGRAM sends goes to the proxy, which decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

__all__ = ["main"]

_PIECE = 1 << 16


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while piece := await reader.read(_PIECE):
            writer.write(piece)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def _run(socket_path: str, port: int, argv: list[str]) -> int:
    async def join(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream = await asyncio.open_unix_connection(socket_path)
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, upstream[1]), _pipe(upstream[0], writer))

    server = await asyncio.start_server(join, "127.0.0.1", port)
    async with server:
        process = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL)
        return await process.wait()


def main() -> None:
    socket_path, port, separator, *argv = sys.argv[1:]
    if separator != "--" or not argv:
        sys.exit("usage: python -m pytest_upskill.clients.bridge SOCKET PORT -- PROGRAM [ARGS...]")
    status = asyncio.run(_run(socket_path, int(port), argv))
    sys.exit(status if status >= 0 else 128 - status)


if __name__ == "__main__":
    main()
