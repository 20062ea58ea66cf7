#!/usr/bin/env python3
"""Render scripts/nginx.conf.template into a runnable nginx configuration.

Used by scripts/run.sh (unix sockets under var/run/) and by the compose `proxy`
service (TCP upstreams `web:8000`, `ws:8001` and `console:6080`). Standard library only.
"""

from __future__ import annotations

import argparse
import getpass
import os
import re
from pathlib import Path

TEMPLATE = Path(__file__).with_name("nginx.conf.template")
# settings.KVMWEB_CONSOLE_PATH (tests/unit/test_nginx_conf.py keeps them equal): noVNC's WebSocket.
CONSOLE_PATH = "/console/websockify"


def upstream(value: str) -> str:
    """`unix:/path` or `host:port`, as nginx's `server` directive takes them."""
    if value.startswith("unix:"):
        return value
    if ":" not in value:
        raise argparse.ArgumentTypeError(f"{value!r} is neither unix:/path nor host:port")
    return value


def render(args: argparse.Namespace) -> str:
    var_dir = Path(args.var_dir).resolve()
    run_dir, log_dir, tmp_dir = var_dir / "run", var_dir / "log", var_dir / "nginx"
    for directory in (run_dir, log_dir, tmp_dir):
        directory.mkdir(parents=True, exist_ok=True)

    # nginx's workers only switch user when the master runs as root. Then run them as
    # the invoking user, so they can reach the app's sockets in a private var/run/.
    user_directive = ""
    if os.geteuid() == 0:
        user_directive = f"user {args.user or getpass.getuser()};"
    elif args.user:
        raise SystemExit("--user needs root")

    real_ip = ""
    if args.real_ip_from:
        lines = [f"    set_real_ip_from {cidr};" for cidr in args.real_ip_from]
        lines += ["    real_ip_header X-Forwarded-For;", "    real_ip_recursive on;"]
        real_ip = "\n".join(lines)

    values = {
        "USER_DIRECTIVE": user_directive,
        "RUN_DIR": str(run_dir),
        "ERROR_LOG": args.error_log or str(log_dir / "nginx-error.log"),
        "ACCESS_LOG": args.access_log or str(log_dir / "nginx-access.log"),
        "TMP_DIR": str(tmp_dir),
        "STATIC_ROOT": str(Path(args.static_root or var_dir / "static").resolve()),
        "LISTEN": args.listen,
        "WEB_UPSTREAM": args.web,
        "WS_UPSTREAM": args.ws,
        "CONSOLE_UPSTREAM": args.console,
        "CONSOLE_PATH": CONSOLE_PATH,
        "CLIENT_MAX_BODY_SIZE": args.client_max_body_size,
        "REAL_IP": real_ip,
    }
    text = TEMPLATE.read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", value)
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise SystemExit(f"nginx_conf.py: unrendered placeholders {left}")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--var-dir", default=os.environ.get("KVMWEB_VAR_DIR", "var"))
    parser.add_argument("--listen", default=f"127.0.0.1:{os.environ.get('PORT', '8000')}")
    parser.add_argument("--web", type=upstream, help="gunicorn: unix:/path or host:port")
    parser.add_argument("--ws", type=upstream, help="daphne: unix:/path or host:port")
    parser.add_argument("--console", type=upstream, help="manage.py console_proxy: unix:/path or host:port")
    parser.add_argument("--static-root", help="collectstatic output (default VAR/static)")
    parser.add_argument("--user", help="worker user when started as root")
    parser.add_argument("--client-max-body-size", default="25m")
    parser.add_argument("--error-log", help="default VAR/log/nginx-error.log (`stderr` in containers)")
    parser.add_argument("--access-log", help="default VAR/log/nginx-access.log (/dev/stdout in containers)")
    parser.add_argument(
        "--real-ip-from",
        action="append",
        default=os.environ.get("KVMWEB_TRUSTED_PROXIES", "").replace(",", " ").split(),
        help="address or CIDR of a trusted proxy in front, whose X-Forwarded-For nginx believes "
        "(repeatable; default: $KVMWEB_TRUSTED_PROXIES, comma or space separated)",
    )
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    run_dir = Path(args.var_dir).resolve() / "run"
    args.web = args.web or f"unix:{run_dir / 'gunicorn.sock'}"
    args.ws = args.ws or f"unix:{run_dir / 'daphne.sock'}"
    args.console = args.console or f"unix:{run_dir / 'console.sock'}"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render(args))


if __name__ == "__main__":
    main()
