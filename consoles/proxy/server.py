"""The console proxy: a threaded WebSocket server for noVNC, on a unix socket or a loopback port.

One thread per browser connection (websockify's default forks a process per connection, about 10 ms
each), a few shared database threads for the session records, and one Redis listener that closes the
sessions the web app names on consoles.sessions.close_channel().
"""

from __future__ import annotations

import json
import logging
import os
import queue
import socket
import socketserver
import stat
import threading
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import suppress
from pathlib import Path
from typing import Any

import redis
from django.db import connections

from consoles.proxy.handler import CLOSE_ENDED, ConsoleProxyHandler
from consoles.proxy.records import AccessGone
from consoles.sessions import close_channel, redis_client

log = logging.getLogger("kvmweb.consoles.proxy")

DB_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0


class SessionRegistry:
    """The live sessions of this process, by ConsoleSession id."""

    def __init__(self) -> None:
        self._live: dict[int, ConsoleProxyHandler] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    def add(self, session_id: int, handler: ConsoleProxyHandler) -> None:
        with self._lock:
            self._live[session_id] = handler
            self._changed.notify_all()

    def remove(self, session_id: int) -> None:
        with self._lock:
            self._live.pop(session_id, None)
            self._changed.notify_all()

    def ids(self) -> list[int]:
        with self._lock:
            return sorted(self._live)

    def end(self, session_id: int, reason: str, code: int = CLOSE_ENDED) -> bool:
        with self._lock:
            handler = self._live.get(session_id)
        if handler is None:
            return False  # another proxy process's session, or already over
        handler.stop(code, reason)
        return True

    def end_all(self, reason: str) -> None:
        for session_id in self.ids():
            self.end(session_id, reason)

    def wait_for(self, check: Callable[[set[int]], bool], timeout: float) -> bool:
        with self._lock:
            return self._changed.wait_for(lambda: check(set(self._live)), timeout)


class DatabaseThreads:
    """A few threads that own the proxy's database connections and run its writes, in order of arrival."""

    def __init__(self, count: int) -> None:
        self._jobs: queue.Queue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]] | None] = (
            queue.Queue()
        )
        self._threads = [
            threading.Thread(target=self._work, name=f"console-db-{n}", daemon=True) for n in range(max(1, count))
        ]
        for thread in self._threads:
            thread.start()

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return self.submit(fn, *args, **kwargs).result(DB_TIMEOUT)

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        """Queue `fn`; jobs run in the order they were queued (per thread), errors are logged."""
        future: Future[Any] = Future()
        self._jobs.put((future, fn, args, kwargs))
        return future

    def stop(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join(STOP_TIMEOUT)

    def _work(self) -> None:
        try:
            while (job := self._jobs.get()) is not None:
                future, fn, args, kwargs = job
                if not future.set_running_or_notify_cancel():
                    continue
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:
                    if not isinstance(exc, AccessGone):
                        log.exception("console proxy: %s failed", getattr(fn, "__name__", fn))
                    future.set_exception(exc)
        finally:
            connections.close_all()


class CloseListener(threading.Thread):
    """Closes the sessions named on the close channel ({"sessions": [ids], "reason": "..."}), reconnecting to Redis."""

    def __init__(self, client: redis.Redis, sessions: SessionRegistry) -> None:
        super().__init__(name="console-close-listener", daemon=True)
        self.client = client
        self.sessions = sessions
        self.subscribed = threading.Event()
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()
        self.join(STOP_TIMEOUT)

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._listen()
            except redis.RedisError as exc:
                self.subscribed.clear()
                log.warning("console proxy: lost the close channel (%s); subscribing again", exc)
                self._stopping.wait(1.0)

    def _listen(self) -> None:
        pubsub = self.client.pubsub()
        try:
            pubsub.subscribe(close_channel())
            while not self._stopping.is_set():
                message = pubsub.get_message(timeout=0.2)
                if message is None:
                    continue
                if message["type"] == "subscribe":
                    self.subscribed.set()
                elif message["type"] == "message":
                    self.handle(message["data"])
        finally:
            pubsub.close()

    def handle(self, data: bytes | str) -> None:
        try:
            message = json.loads(data)
            ids = [int(i) for i in message["sessions"]]
            reason = str(message.get("reason") or "The session was ended.")
        except (ValueError, KeyError, TypeError):
            log.warning("console proxy: ignored a malformed close message %r", data[:200])
            return
        for session_id in ids:
            if self.sessions.end(session_id, reason):
                log.info("console session %s: closing (%s)", session_id, reason)


class ConsoleProxyServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """Listens on a unix socket path (str) or a (host, port); serve_forever() until stop()."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: str | Path | tuple[str, int],
        *,
        client: redis.Redis | None = None,
        heartbeat: float = 30.0,
        db_threads: int = 4,
    ) -> None:
        self.unix_listen = isinstance(address, (str, Path))
        self.unix_path = str(address) if self.unix_listen else ""
        listen: Any = address
        if self.unix_listen:
            self.address_family = socket.AF_UNIX
            listen = self.unix_path
        super().__init__(listen, ConsoleProxyHandler, bind_and_activate=False)
        try:
            if self.unix_listen:
                _remove_stale_socket(self.unix_path)
            self.server_bind()
            if self.unix_listen:
                os.chmod(self.unix_path, 0o660)
            self.server_activate()
        except BaseException:
            self.server_close()
            raise
        # What websockify's handler reads from its server.
        self.only_upgrade = True
        self.verbose = False
        self.daemon = False
        self.record = ""
        self.run_once = False
        self.handler_id = 0
        self.file_only = True
        self.traffic = False
        self.web_auth = False
        self.host_token = False
        self.logger = log
        self.heartbeat = heartbeat

        self.redis = client or redis_client()
        self.sessions = SessionRegistry()
        self.db = DatabaseThreads(db_threads)
        self.close_listener = CloseListener(self.redis, self.sessions)
        self.close_listener.start()
        self._stopped = False
        self._serving = False
        self._serve_lock = threading.Lock()

    def serve_forever(self, poll_interval: float = 0.2) -> None:
        with self._serve_lock:
            if self._stopped:
                return
            self._serving = True
        super().serve_forever(poll_interval)

    def stop(self, reason: str = "The console proxy restarted; reconnect.") -> None:
        """Stop accepting, close every live session (recording its end), then release everything.

        Call from any thread but the one in serve_forever().
        """
        with self._serve_lock:
            if self._stopped:
                return
            self._stopped = True
            serving = self._serving
        if serving:
            self.shutdown()
        self.sessions.end_all(reason)
        if not self.sessions.wait_for(lambda live: not live, STOP_TIMEOUT):
            log.warning("console proxy: sessions %s did not end in time", self.sessions.ids())
        self.close_listener.stop()
        self.db.stop()
        self.server_close()
        if self.unix_listen:
            with suppress(FileNotFoundError):
                os.unlink(self.unix_path)

    def wait_ready(self, timeout: float) -> bool:
        """Listening and subscribed to the close channel."""
        return self.close_listener.subscribed.wait(timeout)


def _remove_stale_socket(path: str) -> None:
    """A socket file left by a proxy that died is removed; one that still answers means another proxy runs."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise OSError(f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise OSError(f"another console proxy listens on {path}")
