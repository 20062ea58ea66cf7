"""Upload and download throughput through kvmweb against `virsh vol-upload` / `vol-download`, same file.

Runs against the real lab (libvirtd in netns kvmweb-lab, pool kvmweb-lab): writes a random file of
--size-mib MiB, starts gunicorn (the Procfile's 2 sync workers, on a free loopback port) and one
Celery worker of its own, then for each round:
  - kvmweb upload: the file is POSTed (with sendfile(2)) to /api/v1/pools/<id>/upload/ and the clock
    stops when the operation has succeeded (the volume is on the host), so the time covers the
    request body, the worker's stream into libvirt and whatever waiting lies between;
  - virsh upload: `virsh vol-create-as` (not timed), then `virsh vol-upload` of the same file;
  - kvmweb download: `curl` GETs /api/v1/volumes/<id>/download/ into /dev/null;
  - virsh download: `virsh vol-download` of the same volume into /dev/null.
It prints MiB/s, the kvmweb/virsh ratio (issue 7's target: >= 0.8x), the peak RSS of the web and
worker processes while a kvmweb upload runs (target: flat, not growing with the file), sampled
from /proc every 20 ms, and the CPU seconds each process spent (web, worker, libvirtd with its
iohelper, the sending client): on a busy machine wall times swing with the load, CPU seconds less.
Numbers are printed, never asserted. Every volume, row and file it made is removed afterwards.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/kvmweb_bench REDIS_URL=redis://127.0.0.1:6379/10 \\
        .venv/bin/python bench/storage.py [--size-mib 1024] [--rounds 1]

Measured 2026-11-27 on the 2-core development machine (load average 3-4 from other work), 1 GiB:
  spool, then stream (before):
    upload    kvmweb   129.8 MiB/s  virsh   519.3 MiB/s  ratio 0.25x  (request answered after 3.2 s of 7.9 s)
    CPU s during the upload: kvmweb web 2.6 + worker 2.1 + libvirtd 1.2 + client 0.5; virsh 0.7 + libvirtd 1.1
  the worker streams while the body arrives, and looks at the operation every 0.5 s, not every MiB:
    upload    kvmweb   197.0 MiB/s  virsh   459.9 MiB/s  ratio 0.43x  (request answered after 4.9 s of 5.2 s)
    CPU s during the upload: kvmweb web 2.5 + worker 1.0 + libvirtd 1.1 + client 0.1; virsh 0.7 + libvirtd 0.8
The web process was then the slow leg. gunicorn 27.0.1 already reads a body of known length up to
1 MiB per recv() (strace: ~1.1k recv calls per GiB), so no gunicorn setting helps: the cost was its
BytesIO copies and a fresh string per read (memmove and page faults, ~1.2 CPU s/GiB in perf), then
writing the temporary file into ever new page cache beside libvirt's writes (copy_folio_from_iter_atomic).
  the web process reads the socket into one buffer (storage/upload_body.py), the worker punches out
  what it has sent (storage/uploads.py), so the web's writes reuse those pages; run alternately with
  the code before, same file, 3 runs x 2 rounds each (load average 2-8 from other work):
    before: upload ratio 0.29x-0.37x (kvmweb 144-239 MiB/s); web CPU 2.8-3.4 s + worker 0.8-1.2 s;
            web RSS 127 -> 131 MiB
    after:  upload ratio 0.43x-0.97x, 0.61x median (kvmweb 153-351 MiB/s, virsh 249-783 MiB/s);
            web CPU 1.4-1.9 s + worker 1.1-1.6 s; RSS flat (web 126, worker 135 MiB)
    download (code unchanged): ratio 0.70x-0.94x before, 0.78x-1.45x after
The two legs now cost about the same (the worker's is often the later to end); what is left is
mostly the copy into and out of the temporary file, which `virsh vol-upload` does not have.
"""

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# bench/ holds http.py, which would shadow the standard library module: run from the project root instead.
sys.path[0] = str(ROOT)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kvmweb.settings")
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")

import http.client  # noqa: E402  (the standard library module, now that bench/ is off the path)

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from rest_framework.authtoken.models import Token  # noqa: E402

from bench.measure import start_worker, wait_for  # noqa: E402
from hosts.inventory import host_reconcile  # noqa: E402
from hosts.models import Host  # noqa: E402
from kvmweb import virt  # noqa: E402
from kvmweb.operations.models import Operation  # noqa: E402
from kvmweb.virt import volumes  # noqa: E402
from storage.models import StoragePool  # noqa: E402

LAB_URI = "qemu:///system"
LAB_POOL = "kvmweb-lab"
PREFIX = "bench-storage-"
MIB = 1024 * 1024


class Watch:
    """While it runs: the peak resident memory of the processes of some process groups (sampled from
    /proc every 20 ms), and the CPU seconds they, libvirtd and this script's children spent."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, groups: dict[str, int]) -> None:
        self.groups = groups
        self.pids: dict[str, list[int]] = {}
        self.rss_start: dict[str, int] = {}
        self.rss_peak: dict[str, int] = dict.fromkeys(groups, 0)
        self.cpu: dict[str, float] = {}
        self._cpu_start: dict[tuple[str, int], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Watch":
        self.pids = {label: [] for label in [*self.groups, "libvirtd"]}
        for entry in Path("/proc").iterdir():
            with suppress(OSError, ValueError):
                pid = int(entry.name)
                if (entry / "comm").read_text().strip() == "libvirtd":
                    self.pids["libvirtd"].append(pid)
                for label, group in self.groups.items():
                    if os.getpgid(pid) == group:
                        self.pids[label].append(pid)
        self.rss_start = self._rss()
        self._cpu_start = self._cpu()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        end = self._cpu()
        # Only processes that lived throughout (another test run may restart a libvirtd meanwhile).
        self.cpu = {label: 0.0 for label in [*self.pids, "client"]}
        for key, seconds in end.items():
            if key in self._cpu_start:
                self.cpu[key[0]] += seconds - self._cpu_start[key]

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            for label, rss in self._rss().items():
                self.rss_peak[label] = max(self.rss_peak[label], rss)

    def _rss(self) -> dict[str, int]:
        """The largest RSS (bytes) of one process of each group."""
        found = dict.fromkeys(self.groups, 0)
        for label in self.groups:
            for pid in self.pids[label]:
                with suppress(OSError):
                    status = Path(f"/proc/{pid}/status").read_text()
                    rss = next((line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")), "0")
                    found[label] = max(found[label], int(rss) * 1024)
        return found

    def _cpu(self) -> dict[tuple[str, int], float]:
        """CPU seconds so far, by (label, pid)."""
        spent = {}
        for label, pids in self.pids.items():
            for pid in pids:
                with suppress(OSError):
                    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                    # utime + stime; for libvirtd also its ended helpers' (the iohelper that writes a volume)
                    last = 15 if label == "libvirtd" else 13
                    spent[label, pid] = sum(int(value) for value in fields[11:last]) / self.TICK
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        own = resource.getrusage(resource.RUSAGE_THREAD)
        spent["client", 0] = children.ru_utime + children.ru_stime + own.ru_utime + own.ru_stime
        return spent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def gunicorn(port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The Procfile's web process on a loopback port."""
    args = [str(Path(sys.executable).parent / "gunicorn"), "kvmweb.wsgi:application", "--workers", "2"]
    args += ["--timeout", "3600", "--bind", f"127.0.0.1:{port}"]
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if not wait_for(lambda: _answers(port) or proc.poll() is not None, 60) or proc.poll() is not None:
            sys.exit(f"gunicorn did not start; see {log}")
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def timed(args: list[str]) -> float:
    began = time.monotonic()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - began


def virsh(*args: str) -> list[str]:
    return ["virsh", "-q", "-c", LAB_URI, *args]


def kvmweb_upload(port: int, token: str, pool: StoragePool, source: Path, name: str) -> tuple[float, float, int]:
    """Seconds until the request was answered and until the volume was on the host; the volume's id.

    The client sends the file with sendfile(2), as fast as loopback lets it: the time is kvmweb's."""
    head = (
        f"POST /api/v1/pools/{pool.pk}/upload/?name={name}&image_format=raw HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\nAuthorization: Token {token}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {source.stat().st_size}\r\n"
        "Connection: close\r\n\r\n"
    )
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as sock, source.open("rb") as body:
        sock.sendall(head.encode())
        sock.sendfile(body)
        response = http.client.HTTPResponse(sock)
        response.begin()
        text = response.read().decode()
    answered = time.monotonic() - began
    if response.status != 202:
        sys.exit(f"the upload request failed: {response.status} {text[-2000:]}")
    op_id = int(json.loads(text)["operation"]["id"])
    if not wait_for(lambda: Operation.objects.get(pk=op_id).status not in Operation.ACTIVE, 600, interval=0.01):
        sys.exit(f"upload operation {op_id} did not end within 600 s")
    done = time.monotonic() - began
    op = Operation.objects.get(pk=op_id)
    if op.status != Operation.Status.SUCCEEDED:
        sys.exit(f"upload operation {op_id} {op.status}: {op.error}")
    return answered, done, int(op.result["volume"])


@dataclass
class Round:
    answered: float  # the upload request was answered
    upload: float  # the uploaded volume was on the host
    virsh_upload: float
    download: float
    virsh_download: float
    watched: Watch  # the kvmweb upload
    virsh_watched: Watch  # the virsh upload
    download_watched: Watch
    virsh_download_watched: Watch


@dataclass
class Bench:
    port: int
    token: str
    pool: StoragePool
    web: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]
    names: list[str] = field(default_factory=list)

    def round(self, source: Path, name: str) -> Round:
        ours, theirs = f"{name}-k.img", f"{name}-v.img"
        self.names += [ours, theirs]
        with Watch({"web": self.web.pid, "worker": self.worker.pid}) as watched:
            answered, upload, volume_id = kvmweb_upload(self.port, self.token, self.pool, source, ours)
        subprocess.run(virsh("vol-create-as", LAB_POOL, theirs, str(source.stat().st_size), "--format", "raw"),
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        with Watch({}) as virsh_watched:
            virsh_upload = timed(virsh("vol-upload", "--pool", LAB_POOL, theirs, str(source)))
        with Watch({"web": self.web.pid}) as download_watched:
            download = timed(["curl", "-sS", "--fail", "-o", "/dev/null", "-H", f"Authorization: Token {self.token}",
                              f"http://127.0.0.1:{self.port}/api/v1/volumes/{volume_id}/download/"])  # fmt: skip
        with Watch({}) as virsh_download_watched:
            virsh_download = timed(virsh("vol-download", "--pool", LAB_POOL, theirs, "/dev/null"))
        return Round(answered, upload, virsh_upload, download, virsh_download,
                     watched, virsh_watched, download_watched, virsh_download_watched)  # fmt: skip


def random_file(path: Path, mib: int) -> Path:
    with path.open("wb") as out:
        for _ in range(mib):
            out.write(os.urandom(MIB))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    if not 1 <= args.size_mib <= 8192:
        parser.error("--size-mib must be within 1..8192")

    call_command("migrate", verbosity=0)  # a fresh bench database is usable at once
    work = Path(tempfile.mkdtemp(prefix="kvmweb-bench-storage-", dir=ROOT / "var"))
    source = random_file(work / "source.img", args.size_mib)
    admin, _ = get_user_model().objects.get_or_create(
        username=f"{PREFIX}admin", defaults={"is_staff": True, "is_superuser": True}
    )
    token, _ = Token.objects.get_or_create(user=admin)
    Host.objects.filter(name=f"{PREFIX}lab").delete()  # left by an interrupted run
    host = Host.objects.create(name=f"{PREFIX}lab", uri=LAB_URI, state=Host.State.CONNECTED)
    target = host.virt_target()
    host_reconcile(host=host, inventory=virt.get_inventory(target))
    pool = StoragePool.objects.get(host=host, name=LAB_POOL)
    port = free_port()
    run_id = uuid.uuid4().hex[:6]
    rounds: list[Round] = []
    worker = start_worker(work / "worker.log", pool="prefork", concurrency=2)
    bench = None
    try:
        with gunicorn(port, work / "gunicorn.log") as web:
            bench = Bench(port, token.key, pool, web, worker)
            # Not counted: each process loads its code and connects on its first request.
            warm = random_file(work / "warm.img", 1)
            for n in range(2):
                bench.round(warm, f"{PREFIX}{run_id}-warm{n}")
            rounds += [bench.round(source, f"{PREFIX}{run_id}-{n}") for n in range(args.rounds)]
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(30)
        names = bench.names if bench else []
        for record in volumes.host_volumes(target):
            if record.name in names and record.path:
                volumes.delete_volume(target, record.path)
        Operation.objects.filter(target_label__contains=f"/{PREFIX}").delete()
        host.delete()
        admin.delete()
        shutil.rmtree(work)

    def rate(seconds: float) -> float:
        return args.size_mib / seconds

    print(f"# {args.size_mib} MiB of random data, pool {LAB_POOL} on {LAB_URI}; gunicorn 2 sync workers, "
          f"Celery prefork x2")  # fmt: skip
    for r in rounds:
        print(f"upload    kvmweb {rate(r.upload):7.1f} MiB/s  virsh {rate(r.virsh_upload):7.1f} MiB/s  "
              f"ratio {r.virsh_upload / r.upload:.2f}x  (request answered after {r.answered:.1f} s of "
              f"{r.upload:.1f} s)")  # fmt: skip
        print(f"download  kvmweb {rate(r.download):7.1f} MiB/s  virsh {rate(r.virsh_download):7.1f} MiB/s  "
              f"ratio {r.virsh_download / r.download:.2f}x")  # fmt: skip
        w, v = r.watched, r.virsh_watched
        print(f"RSS during the upload: worker {w.rss_start['worker'] / MIB:.0f} -> peak "
              f"{w.rss_peak['worker'] / MIB:.0f} MiB, web {w.rss_start['web'] / MIB:.0f} -> peak "
              f"{w.rss_peak['web'] / MIB:.0f} MiB")  # fmt: skip
        print(f"CPU s during the upload: kvmweb web {w.cpu['web']:.1f} + worker {w.cpu['worker']:.1f} + libvirtd "
              f"{w.cpu['libvirtd']:.1f} + client {w.cpu['client']:.1f}; virsh {v.cpu['client']:.1f} + libvirtd "
              f"{v.cpu['libvirtd']:.1f}")  # fmt: skip
        d, vd = r.download_watched, r.virsh_download_watched
        print(f"CPU s during the download: kvmweb web {d.cpu['web']:.1f} + libvirtd {d.cpu['libvirtd']:.1f} + client "
              f"{d.cpu['client']:.1f}; virsh {vd.cpu['client']:.1f} + libvirtd {vd.cpu['libvirtd']:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
