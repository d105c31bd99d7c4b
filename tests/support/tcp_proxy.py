"""A loopback TCP proxy whose connections a test can cut at will.

Used by fault tests: point a backend at ``proxy.port`` instead of the server's port, then call
:meth:`TcpProxy.cut` to drop every open connection (both directions, abruptly), or
:meth:`TcpProxy.pause` to refuse new connections for a while, and watch the workers recover.
Runs in its own thread with its own event loop, so it works for worker subprocesses too.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

import anyio
import anyio.abc
from anyio.from_thread import start_blocking_portal


class TcpProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._portal_cm: Any = None
        self._portal: Any = None
        self._listener: anyio.abc.Listener[anyio.abc.SocketStream] | None = None
        self._streams: set[anyio.abc.SocketStream] = set()
        self._accepting = threading.Event()
        self._accepting.set()
        self.port = 0
        self.connections = 0
        self.cuts = 0

    def __enter__(self) -> TcpProxy:
        self._portal_cm = start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        self._listener = self._portal.call(self._listen)
        self.port = int(self._listener.extra(anyio.abc.SocketAttribute.local_address)[1])
        self._portal.start_task_soon(self._serve)
        return self

    def __exit__(self, *exc: object) -> None:
        self._portal.call(self._close)
        self._portal_cm.__exit__(*exc)

    async def _listen(self) -> anyio.abc.Listener[anyio.abc.SocketStream]:
        return await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)

    async def _serve(self) -> None:
        assert self._listener is not None
        await self._listener.serve(self._handle)

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        if not self._accepting.is_set():
            await client.aclose()
            return
        try:
            upstream = await anyio.connect_tcp(*self.target)
        except OSError:
            await client.aclose()
            return
        self.connections += 1
        self._streams.update((client, upstream))
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(self._pump, client, upstream, group.cancel_scope)
                group.start_soon(self._pump, upstream, client, group.cancel_scope)
        finally:
            self._streams.difference_update((client, upstream))
            for stream in (client, upstream):
                await self._abort(stream)

    async def _pump(self, source: anyio.abc.SocketStream, sink: anyio.abc.SocketStream, scope: anyio.CancelScope) -> None:
        try:
            async for chunk in source:
                await sink.send(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        scope.cancel()

    @staticmethod
    async def _abort(stream: anyio.abc.SocketStream) -> None:
        raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        try:
            # SO_LINGER 0: close with RST, the way a dropped network path looks to a client.
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        await stream.aclose()

    async def _cut(self) -> int:
        streams = list(self._streams)
        self._streams.clear()
        for stream in streams:
            await self._abort(stream)
        return len(streams) // 2

    async def _close(self) -> None:
        await self._cut()
        if self._listener is not None:
            await self._listener.aclose()

    def cut(self) -> int:
        """Drop every open connection; return how many were dropped."""
        self.cuts += 1
        return int(self._portal.call(self._cut))

    def pause(self) -> None:
        """Refuse new connections (they are accepted and closed at once) and cut the open ones."""
        self._accepting.clear()
        self.cut()

    def resume(self) -> None:
        """Accept and forward new connections again."""
        self._accepting.set()
