"""A TCP relay on 127.0.0.1 that a test can cut, black-hole and restore: the network
between the app and PostgreSQL (or Redis), failing the way real networks do.

    async with TcpProxy("127.0.0.1", 5432) as proxy:
        url = ...port=proxy.port...   # the app connects through the relay
        await proxy.cut()             # open connections are reset, new ones refused
        await proxy.blackhole()       # new connections are accepted and never answered
        await proxy.restore()         # relaying again, on the same port
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Self

CHUNK_BYTES = 64 * 1024


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self.connections_accepted = 0
        self._server: asyncio.Server | None = None
        self._is_blackholed = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        # Set (and replaced) on every reset: releases the connections a black hole holds.
        self._reset = asyncio.Event()

    async def __aenter__(self) -> Self:
        await self._listen()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.cut()

    async def cut(self) -> None:
        """Stop listening (connects are refused) and reset every open connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self._reset_all()

    async def blackhole(self) -> None:
        """Accept new connections but relay nothing (a partition, not a refusal); open
        connections are reset."""
        self._is_blackholed = True
        for writer in list(self._writers):
            writer.transport.abort()
        if self._server is None:
            await self._listen()

    async def restore(self) -> None:
        """Relay again on the same port; connections held by a black hole are reset."""
        if self._is_blackholed:
            await self._reset_all()
        self._is_blackholed = False
        if self._server is None:
            await self._listen()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _reset_all(self) -> None:
        # Handlers end on their own once their sockets are gone (cancelling them would
        # make asyncio's stream callback log an error on Python 3.11).
        for writer in list(self._writers):
            writer.transport.abort()
        self._reset.set()
        self._reset = asyncio.Event()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_accepted += 1
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            if self._is_blackholed:
                await self._reset.wait()  # held open and silent
                return
            upstream_reader, upstream_writer = await asyncio.open_connection(
                self.target_host, self.target_port
            )
            self._writers.add(upstream_writer)
            await asyncio.gather(_pump(reader, upstream_writer), _pump(upstream_reader, writer))
        except OSError:
            pass
        finally:
            self._handlers.discard(task)
            for end in (writer, upstream_writer):
                if end is not None:
                    end.transport.abort()
                    self._writers.discard(end)


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK_BYTES):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.transport.abort()  # one side gone: the other goes too
