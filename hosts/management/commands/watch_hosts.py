"""The events process: follow every enabled host's libvirt events and keep the database and browsers current."""

import asyncio
import logging
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from hosts.watcher.executors import DaemonExecutor, run_in
from hosts.watcher.supervisor import Supervisor
from kvmweb import virt

log = logging.getLogger("kvmweb.watcher")

# Database connections live this long in the watcher's threads: opening a PostgreSQL connection
# per event would cost more than the event's whole write. A connection that died meanwhile is
# replaced on first use (hosts.watcher.executors.with_fresh_connection).
CONN_MAX_AGE = 300
CLOSE_TIMEOUT = 5.0


class Command(BaseCommand):
    help = (
        "Follow the libvirt events (domains, networks, storage pools) of every enabled host, update the "
        "database and push changes to browsers. Runs until SIGTERM or SIGINT; -v 3 logs every event with its timings."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--check-every",
            type=float,
            default=30.0,
            help="Seconds between re-reads of the hosts table (host changes are also announced at once).",
        )
        parser.add_argument("--db-threads", type=int, default=4, help="Threads (and connections) for database writes.")

    def handle(self, *args: Any, check_every: float, db_threads: int, verbosity: int, **options: Any) -> None:
        if verbosity >= 3:
            log.setLevel(logging.DEBUG)  # one line per event, with its timings
        _keep_database_connections()
        asyncio.run(self._main(check_every=check_every, db_threads=db_threads))

    async def _main(self, *, check_every: float, db_threads: int) -> None:
        loop = asyncio.get_running_loop()
        # Before any connection is opened: libvirt's events, keepalives and close callbacks run on this loop.
        virt.use_asyncio_event_loop(loop)
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, _stopper(stop, signum))
        supervisor = Supervisor(check_every=check_every, db_threads=db_threads)
        log.info("watching hosts (re-reading the hosts table every %g s)", check_every)
        await supervisor.run(stop)
        # The shared connections that fetched records go too, while the loop still serves libvirt's
        # callbacks (left to interpreter exit, they would call into a half torn-down libvirtaio).
        try:
            # In a daemon thread: asyncio.run would wait for a default-executor thread hung on a dead host.
            await asyncio.wait_for(run_in(DaemonExecutor("libvirt-close"), virt.close_all), CLOSE_TIMEOUT)
        except TimeoutError:
            log.warning("closing libvirt connections took over %g s; exiting anyway", CLOSE_TIMEOUT)
        for _ in range(3):
            await asyncio.sleep(0)  # libvirt frees removed handles from tasks on the loop
        log.info("stopped")


def _stopper(stop: asyncio.Event, signum: int) -> Any:
    def handler() -> None:
        if not stop.is_set():
            log.info("%s received: closing event connections", signal.Signals(signum).name)
        stop.set()

    return handler


def _keep_database_connections() -> None:
    for database in settings.DATABASES.values():
        if database.get("CONN_MAX_AGE", 0) == 0:
            database["CONN_MAX_AGE"] = CONN_MAX_AGE
