#!/usr/bin/env python3
"""Console proxy benchmark: what the proxy (manage.py console_proxy) adds, against talking to the VNC socket directly.

Runs its own proxy process on a unix socket, against the configured database and Redis (DATABASE_URL,
REDIS_URL), a tiny guest on the KVM lab (bench-console, created if missing, kept with --keep), and small
local RFB servers (echo, blast, sink) that isolate the proxy's own cost from QEMU's. Prints, never asserts:

    1. token request → first framebuffer update from the real guest, p50/p95 (console_open, WebSocket,
       RFB handshake, a full update request, the update), and the same without the proxy and token
    2. connect cost: WebSocket upgrade + token + session record + RFB handshake, against a direct handshake
    3. input round trip (a KeyEvent echoed back) through the proxy against direct, p50/p95
    4. throughput both ways through the proxy against direct, side by side
    5. N concurrent sessions held for D seconds (up to 30 to the real guest: QEMU's own limit is 32 clients;
       the rest to a local RFB server), each asking for a small update every second: errors, updates, and
       the proxy's CPU time

    .venv/bin/python bench/console.py [--samples 30] [--sessions 50] [--hold 60] [--mib 512] [--keep]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# bench/ holds http.py, which would shadow the standard library module: run from the project root instead.
sys.path[0] = str(ROOT)

import argparse  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from typing import Any  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kvmweb.settings")
os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402

from bench.measure import ensure_database, percentile, wait_for  # noqa: E402
from consoles import tokens  # noqa: E402
from consoles.models import ConsoleSession  # noqa: E402
from consoles.services import console_open  # noqa: E402
from hosts.inventory import host_reconcile  # noqa: E402
from hosts.models import Host  # noqa: E402
from kvmweb import virt  # noqa: E402
from kvmweb.actors import Actor  # noqa: E402
from kvmweb.audit.models import AuditEvent  # noqa: E402
from tests.lab.guests import ensure_guest, remove_guest  # noqa: E402
from tests.lab.hosts import start_lab  # noqa: E402
from tests.vnc import FakeVNCServer, RawTransport, RFBClient, WebSocketClient, key_event  # noqa: E402
from vms.models import VirtualMachine  # noqa: E402

GUEST = "bench-console"
USER = "bench-console"
SERVER_INIT = struct.pack(">HH", 8, 4) + struct.pack(">BBBBHHHBBBxxx", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
SERVER_INIT += struct.pack(">I", 5) + b"bench"
CHUNK = 256 * 1024
QEMU_CONNECTIONS = 30


class LocalServer:
    """An RFB 3.8 server (security None, 8x4) that then echoes, blasts `size` bytes, or sinks `size` bytes and acks."""

    def __init__(self, path: Path, mode: str, size: int = 0) -> None:
        self.path, self.mode, self.size = str(path), mode, size
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(128)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client:
            try:
                client.sendall(b"RFB 003.008\n")
                _read(client, 12)
                client.sendall(b"\x01\x01")
                _read(client, 1)
                client.sendall(struct.pack(">I", 0))
                _read(client, 1)
                client.sendall(SERVER_INIT)
                if self.mode == "echo":
                    while data := client.recv(65536):
                        client.sendall(data)
                elif self.mode == "blast":
                    _read(client, 1)  # go
                    block, left = bytes(CHUNK), self.size
                    while left > 0:
                        client.sendall(block[: min(CHUNK, left)])
                        left -= CHUNK
                    client.recv(1)
                else:  # sink
                    _read(client, self.size, discard=True)
                    client.sendall(b"k")
                    client.recv(1)
            except OSError:
                return


def _read(sock: socket.socket, n: int, *, discard: bool = False) -> bytes:
    data, got = bytearray(), 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            raise OSError("closed")
        got += len(chunk)
        if not discard:
            data += chunk
    return bytes(data)


def stats(label: str, values: list[float], unit: str = "ms", scale: float = 1000.0) -> str:
    p50, p95 = percentile(values, 0.5) * scale, percentile(values, 0.95) * scale
    return f"{label}: p50 {p50:.2f} {unit}, p95 {p95:.2f} {unit}"


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path, user: Any, vm: VirtualMachine) -> None:
        self.args, self.work, self.user, self.vm = args, work, user, vm
        self.proxy_path = str(work / "console.sock")

    def token_for(self, target: dict[str, Any]) -> str:
        grant = tokens.grant_for(user=self.user.pk, vm=str(self.vm.uuid), kind="vnc", target=target, view_only=False)
        return f"{settings.KVMWEB_CONSOLE_PATH}?token={tokens.sign(grant)}"

    def via_proxy(self, url: str) -> WebSocketClient:
        return WebSocketClient.open(self.proxy_path, url, headers={"X-Real-IP": "127.0.0.1"})

    def first_update(self) -> None:
        through, direct = [], []
        target = console_open(actor=Actor(user=self.user, ip=None), vm=self.vm).websocket_url  # warm-up
        self.via_proxy(target).close()
        socket_path = _vnc_socket(self.vm)
        for _ in range(self.args.samples):
            began = time.perf_counter()
            url = console_open(actor=Actor(user=self.user, ip="127.0.0.1"), vm=self.vm).websocket_url
            ws = self.via_proxy(url)
            rfb = RFBClient(ws)
            rfb.handshake()
            rfb.request_update(False)
            rfb.read_update()
            through.append(time.perf_counter() - began)
            ws.close()
            began = time.perf_counter()
            raw = RFBClient(RawTransport.open(socket_path))
            raw.handshake()
            raw.request_update(False)
            raw.read_update()
            direct.append(time.perf_counter() - began)
            raw.close()
        screen = f"real guest {rfb.width}x{rfb.height}"
        print(f"1. token request → first framebuffer update ({self.args.samples} each, {screen})")
        print("   " + stats("through the proxy (token + WebSocket + RFB)", through))
        print("   " + stats("direct to the VNC socket (RFB only)     ", direct))

    def connect_cost(self, server: LocalServer) -> None:
        through, direct = [], []
        for _ in range(self.args.samples):
            url = self.token_for({"socket": server.path})
            began = time.perf_counter()
            ws = self.via_proxy(url)
            RFBClient(ws).handshake()
            through.append(time.perf_counter() - began)
            ws.close()
            began = time.perf_counter()
            raw = RFBClient(RawTransport.open(server.path))
            raw.handshake()
            direct.append(time.perf_counter() - began)
            raw.close()
        added = [t - d for t, d in zip(sorted(through), sorted(direct), strict=True)]
        print(f"2. connect + RFB handshake against a local RFB server ({self.args.samples} each)")
        print("   " + stats("through the proxy", through))
        print("   " + stats("direct           ", direct))
        print("   " + stats("added per connect", added))

    def round_trip(self, server: LocalServer) -> None:
        count = self.args.samples * 20
        ws = self.via_proxy(self.token_for({"socket": server.path}))
        proxied = RFBClient(ws)
        proxied.handshake()
        raw_t = RawTransport.open(server.path)
        raw = RFBClient(raw_t)
        raw.handshake()
        # SetEncodings sent by the handshake comes back from the echo server: read it first.
        proxied.t.recv_exact(8)
        raw.t.recv_exact(8)
        through = self._echo(proxied, count)
        direct = self._echo(raw, count)
        ws.close()
        raw.close()
        added = percentile(through, 0.5) - percentile(direct, 0.5)
        print(f"3. input round trip, a KeyEvent echoed back by a local server ({count} each)")
        print("   " + stats("through the proxy", through))
        print("   " + stats("direct           ", direct))
        print(f"   added by the proxy: {added * 1000:.3f} ms at p50")

    @staticmethod
    def _echo(rfb: RFBClient, count: int) -> list[float]:
        times = []
        message = key_event(0x61, True)
        for _ in range(count):
            began = time.perf_counter()
            rfb.send(message)
            rfb.t.recv_exact(len(message))
            times.append(time.perf_counter() - began)
        return times

    def throughput(self, blast: LocalServer, sink: LocalServer) -> None:
        size = blast.size

        def down(transport: Any) -> float:
            rfb = RFBClient(transport)
            rfb.handshake()
            began = time.perf_counter()
            transport.send(b"g")
            left = size
            while left > 0:
                left -= len(transport.recv_exact(min(left, 1 << 20)))
            elapsed = time.perf_counter() - began
            transport.close()
            return size / elapsed / 2**20

        def up(transport: Any) -> float:
            rfb = RFBClient(transport)
            rfb.handshake()
            block, left = bytes(65536), size - 8  # the handshake's SetEncodings counts
            began = time.perf_counter()
            while left > 0:
                transport.send(block[: min(len(block), left)])
                left -= len(block)
            transport.recv_exact(1)
            elapsed = time.perf_counter() - began
            transport.close()
            return size / elapsed / 2**20

        proxy_down = down(self.via_proxy(self.token_for({"socket": blast.path})))
        direct_down = down(RawTransport.open(blast.path))
        proxy_up = up(self.via_proxy(self.token_for({"socket": sink.path})))
        direct_up = up(RawTransport.open(sink.path))
        print(f"4. throughput, {size / 2**20:.0f} MiB each way (MiB/s)")
        down_ratio = proxy_down / direct_down
        print(f"   to the browser:   proxy {proxy_down:8.0f}   direct {direct_down:8.0f}   ({down_ratio:.2f}x)")
        print(f"   from the browser: proxy {proxy_up:8.0f}   direct {direct_up:8.0f}   ({proxy_up / direct_up:.2f}x)")

    def concurrent(self, proxy: subprocess.Popen[bytes], fake: FakeVNCServer) -> None:
        n, hold = self.args.sessions, self.args.hold
        # QEMU takes at most 32 VNC clients per guest (its `connections` default): the rest go to a local
        # RFB server that answers update requests, so the proxy still carries n sessions at once.
        real = min(n, QEMU_CONNECTIONS)
        urls = [
            console_open(actor=Actor(user=self.user, ip="127.0.0.1"), vm=self.vm).websocket_url for _ in range(real)
        ]
        urls += [self.token_for({"socket": fake.path}) for _ in range(n - real)]
        errors: list[str] = []
        updates = [0] * n
        ready = threading.Barrier(n + 1, timeout=120)
        stop = threading.Event()

        def session(i: int) -> None:
            try:
                ws = self.via_proxy(urls[i])
                rfb = RFBClient(ws)
                rfb.handshake()
            except Exception as exc:
                errors.append(f"session {i} connect: {exc}")
                ready.abort()
                return
            try:
                ready.wait()
            except threading.BrokenBarrierError:
                ws.close()
                return
            try:
                while not stop.wait(1.0):
                    rfb.send(struct.pack(">BBHHHH", 3, 0, 0, 0, 16, 16))
                    rfb.read_update()
                    updates[i] += 1
            except Exception as exc:
                errors.append(f"session {i}: {exc}")
            finally:
                ws.close()

        cpu_before = _cpu_seconds(proxy.pid)
        with ThreadPoolExecutor(n) as pool:
            futures = [pool.submit(session, i) for i in range(n)]
            try:
                ready.wait()
                live = ConsoleSession.objects.filter(user=self.user, ended=None).count()
                time.sleep(hold)  # the duration being measured, not a wait for something
            except threading.BrokenBarrierError:
                live = 0
            stop.set()
            for future in futures:
                future.result()
        cpu = _cpu_seconds(proxy.pid) - cpu_before
        ended = wait_for(lambda: not ConsoleSession.objects.filter(user=self.user, ended=None).exists(), 30)
        print(
            f"5. {n} concurrent sessions ({real} to the real guest, {n - real} to a local RFB server), held {hold:g} s,"
        )
        print("   each asking for a 16x16 update every second")
        print(f"   live session rows while held: {live}; all ended afterwards: {ended}")
        print(f"   updates received: {sum(updates)} (min {min(updates)}, max {max(updates)} per session)")
        print(f"   errors: {len(errors)}" + "".join(f"\n     {e}" for e in errors[:10]))
        print(f"   proxy CPU time: {cpu:.2f} s over {hold:g} s")


def _vnc_socket(vm: VirtualMachine) -> str:
    from consoles.targets import vnc_target

    return str(vnc_target(vm)["socket"])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_proxy(work: Path) -> subprocess.Popen[bytes]:
    log = work / "proxy.log"
    args = [sys.executable, "manage.py", "console_proxy", "--socket", str(work / "console.sock")]
    proxy = subprocess.Popen(args, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    if not wait_for(lambda: "listening on" in log.read_text() or proxy.poll() is not None, 30):
        proxy.terminate()
        sys.exit(f"the console proxy did not start; see {log}")
    return proxy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--hold", type=float, default=60.0, help="seconds to hold the concurrent sessions")
    parser.add_argument("--mib", type=int, default=512, help="MiB per throughput run")
    parser.add_argument("--keep", action="store_true", help="keep the bench-console guest afterwards")
    args = parser.parse_args()

    ensure_database()
    call_command("migrate", verbosity=0)  # a fresh bench database is usable at once
    host_info, _ = start_lab()
    guest = ensure_guest(host_info, GUEST, start=True, wait=True, timeout=120)
    User = get_user_model()
    user, _ = User.objects.get_or_create(username=USER, defaults={"is_staff": True, "is_superuser": True})
    host, _ = Host.objects.get_or_create(
        uri=host_info.uri, defaults={"name": "bench-lab", "state": Host.State.CONNECTED}
    )
    host_reconcile(host=host, inventory=virt.get_inventory(host.virt_target()))
    vm = VirtualMachine.objects.get(uuid=guest.uuid)

    work = Path(tempfile.mkdtemp(prefix="kvmweb-bench-console-", dir="/tmp"))
    proxy = run_proxy(work)
    servers: list[LocalServer] = []
    try:
        bench = Bench(args, work, user, vm)
        echo = LocalServer(work / "echo.sock", "echo")
        blast = LocalServer(work / "blast.sock", "blast", args.mib * 2**20)
        sink = LocalServer(work / "sink.sock", "sink", args.mib * 2**20)
        servers = [echo, blast, sink]
        fake = FakeVNCServer(work / "fake.sock")
        import numpy  # noqa: F401 - websockify unmasks with it; say so if it is missing

        print(f"console proxy benchmark: {os.cpu_count()} CPUs, numpy present, websockify threaded handler")
        steps: list[Callable[[], None]] = [
            bench.first_update,
            lambda: bench.connect_cost(echo),
            lambda: bench.round_trip(echo),
            lambda: bench.throughput(blast, sink),
            lambda: bench.concurrent(proxy, fake),
        ]
        for step in steps:
            step()
    finally:
        for server in servers:
            server.listener.close()
        proxy.terminate()
        proxy.wait(30)
        shutil.rmtree(work, ignore_errors=True)
        ConsoleSession.objects.filter(user=user).delete()
        AuditEvent.objects.filter(actor=user).delete()
        if not args.keep:
            remove_guest(host_info, GUEST)


if __name__ == "__main__":
    main()
