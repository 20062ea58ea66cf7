"""The console process: noVNC's WebSockets to the guests' VNC displays, one signed single-use token each."""

import logging
import signal
import threading
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from consoles.proxy import records
from consoles.proxy.server import ConsoleProxyServer

log = logging.getLogger("kvmweb.consoles.proxy")

# The few database threads keep their connections this long (a connection per console connect would
# cost more than the session's writes); one that died meanwhile is replaced on first use.
CONN_MAX_AGE = 300


def default_socket() -> Path:
    return Path(settings.VAR_DIR) / "run" / "console.sock"


class Command(BaseCommand):
    help = (
        "Serve the graphical consoles: nginx sends KVMWEB_CONSOLE_PATH here. Listens on a unix socket "
        "(default VAR/run/console.sock) or, with --bind, on host:port. Runs until SIGTERM or SIGINT, "
        "which close the live sessions and record their end."
    )

    def add_arguments(self, parser: Any) -> None:
        where = parser.add_mutually_exclusive_group()
        where.add_argument("--socket", help="unix socket path (default: KVMWEB_VAR_DIR/run/console.sock)")
        where.add_argument("--bind", help="host:port instead of a unix socket (the compose service: 0.0.0.0:6080)")
        parser.add_argument("--heartbeat", type=float, default=30.0, help="seconds between WebSocket pings")
        parser.add_argument("--db-threads", type=int, default=4, help="threads (and connections) for session records")

    def handle(
        self, *args: Any, socket: str | None, bind: str | None, heartbeat: float, db_threads: int, **options: Any
    ) -> None:
        if options["verbosity"] >= 3:
            log.setLevel(logging.DEBUG)
        for database in settings.DATABASES.values():
            if database.get("CONN_MAX_AGE", 0) == 0:
                database["CONN_MAX_AGE"] = CONN_MAX_AGE
        address: str | tuple[str, int]
        if bind:
            host, _, port = bind.rpartition(":")
            if not host or not port.isdigit():
                raise CommandError(f"--bind wants host:port, not {bind!r}")
            address = (host.strip("[]"), int(port))
        else:
            path = Path(socket) if socket else default_socket()
            path.parent.mkdir(parents=True, exist_ok=True)
            address = str(path)
        ended = records.sessions_end_stale(reason="The console proxy stopped without closing it (killed or crashed).")
        if ended:
            log.warning("marked %d console sessions of an earlier proxy as ended", ended)
        try:
            server = ConsoleProxyServer(address, heartbeat=heartbeat, db_threads=db_threads)
        except OSError as exc:
            raise CommandError(f"console proxy: cannot listen on {address}: {exc}") from exc

        # serve_forever() runs here, so the handler asks another thread to stop it.
        stopper = threading.Thread(target=server.stop, name="console-stop")

        def stop(signum: int, frame: Any) -> None:
            log.info("%s received: closing the console sessions", signal.Signals(signum).name)
            if not stopper.is_alive() and stopper.ident is None:
                stopper.start()

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, stop)
        where = address if isinstance(address, str) else f"{address[0]}:{address[1]}"
        log.info("console proxy listening on %s", where)
        server.serve_forever()
        if stopper.ident is not None:
            stopper.join()
        else:
            server.stop()
        log.info("console proxy stopped")
