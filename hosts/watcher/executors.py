"""Threads for the watcher's blocking work: libvirt calls (one thread per host) and database calls.

The event loop never blocks. A libvirt call hung on a dead host holds only that host's thread, and
the threads are daemons, so a hung call never holds up the process's exit on SIGTERM either (the
standard ThreadPoolExecutor joins its threads at exit).
"""

from __future__ import annotations

import asyncio
import functools
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

from django.db import InterfaceError, OperationalError, close_old_connections, connection

T = TypeVar("T")
_STOP = object()


class DaemonExecutor(Executor):
    """A small thread pool of daemon threads, started on first use."""

    def __init__(self, name: str, workers: int = 1, *, on_exit: Callable[[], object] | None = None) -> None:
        self.name = name
        self.workers = workers
        # Run in each thread as it stops, e.g. to close that thread's database connection.
        self.on_exit = on_exit
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._shutdown = False

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError(f"{self.name}: cannot submit after shutdown")
            self._queue.put((future, fn, args, kwargs))
            if len(self._threads) < self.workers:
                thread = threading.Thread(target=self._work, name=f"{self.name}-{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
        return future

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                if self.on_exit is not None:
                    self.on_exit()
                return
            future, fn, args, kwargs = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._shutdown = True
            threads = list(self._threads)
        if cancel_futures:
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not _STOP:
                    item[0].cancel()
        for _ in threads:
            self._queue.put(_STOP)
        if wait:
            self.join()

    def join(self, timeout: float | None = None) -> bool:
        """Wait (up to ``timeout`` s in all) for the threads to stop after ``shutdown``; True if they did."""
        with self._lock:
            threads = list(self._threads)
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in threads)


def with_fresh_connection(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ORM code in a worker thread, closing a stale or broken connection before and after.

    The same care channels' database_sync_to_async takes: a connection that failed, or outlived
    CONN_MAX_AGE, is replaced rather than reused. A kept connection that died since its last use
    (the database restarted) fails on first use: the work then runs once more on a new connection,
    which costs nothing per event, unlike checking every connection before use.
    """
    close_old_connections()
    try:
        try:
            return fn(*args, **kwargs)
        except (InterfaceError, OperationalError):
            if connection.in_atomic_block:
                raise
            connection.close()
            return fn(*args, **kwargs)
    finally:
        close_old_connections()


async def run_in(executor: Executor, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Await ``fn(*args, **kwargs)`` run in ``executor``."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(executor, functools.partial(fn, *args, **kwargs))


async def run_db(executor: Executor, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Await ORM work run in one of the database threads."""
    return await run_in(executor, with_fresh_connection, fn, *args, **kwargs)
