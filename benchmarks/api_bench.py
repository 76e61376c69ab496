"""API benchmark: the storefront product listing and detail under load, ours vs plain DRF.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/backoffice_a make bench-api

It needs a database that already holds a catalog (``manage.py generate_catalog --products 100000
--seed 1`` makes the 100k-product one the budget speaks of), and ``wrk`` (``apt-get install -y
wrk``). It writes nothing to the database.

What it does:

1. picks the scenarios from the database: page 1 of the listing, the top-level category with the
   most products ordered by price, page 2,000 (or the deepest page there is), and the detail of a
   product from the middle of the catalog;
2. counts the queries of one request per scenario in a separate process with Django's test client
   and cachalot disabled (the work a request costs when nothing is cached);
3. serves the app with gunicorn as deployed (``deploy/gunicorn.conf.py``, 2 sync workers, DEBUG
   off, LOG_LEVEL=WARNING, cachalot as configured: on by default, with a fresh file cache) on a
   loopback port, and loads each scenario with ``wrk`` (8 connections, 2 threads, a warm-up and
   then a measured run with ``--latency``): requests/s, p50, p99, and the queries the warm server
   still sends to the database per request (its ``Server-Timing`` header);
4. does the same for a plain Django REST Framework + django-filter listing
   (``benchmarks/drf_baseline``: nested ModelSerializers, PageNumberPagination of 24,
   DjangoFilterBackend + OrderingFilter, no select_related or prefetch_related), served the same
   way on another port, one server at a time;
5. prints a table and the ratios. Budget (DESIGN.md): at least 300 req/s on page 1 with p99 under
   60 ms, deep pages as fast as page 1, at most 4 queries, at least 5x the DRF baseline.

It prints numbers; it is not a test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OURS_SETTINGS = "backoffice.settings"
DRF_SETTINGS = "benchmarks.drf_baseline.settings"
PAGE_SIZE = 24
DEEP_PAGE = 2000


@dataclass
class Scenario:
    name: str
    ours: str  # the path on our API
    drf: str | None  # the same listing on the DRF baseline, if it has one


@dataclass
class Load:
    requests_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    errors: str = ""
    queries_uncached: int | None = None  # in-process, cachalot disabled
    queries_warm: int | None = None  # Server-Timing of a request to the warm server
    server_ms: str = ""  # Server-Timing db / total durations of that request
    cpu_ms: float = 0.0  # gunicorn CPU per request during the measured run
    machine_busy: float = 0.0  # share of the machine's CPUs busy during the measured run
    extra: dict = field(default_factory=dict)


# --- Environment ------------------------------------------------------------------------------


def bench_env(data_dir: Path, settings_module: str, port: int | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "DJANGO_SETTINGS_MODULE": settings_module,
        "DEBUG": "0",
        "SECRET_KEY": env.get("BENCH_SECRET_KEY") or secrets.token_urlsafe(50)[:50],
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "0",
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "console",
        "WEB_CONCURRENCY": "2",
        # A fresh file cache: cachalot starts cold, and the project's var/ is left alone.
        "DATA_DIR": str(data_dir),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    })
    env.setdefault("CACHALOT_ENABLED", "1")
    if port is not None:
        env["PORT"] = str(port)
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat (Linux; zeros elsewhere)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def process_tree_cpu(pid: int) -> float:
    """CPU seconds used by gunicorn: the master, its live workers and the workers it reaped."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(x) for x in stat[11:15])  # utime stime cutime cstime
        for child in Path("/proc").iterdir():
            if not child.name.isdigit():
                continue
            try:
                fields = (child / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                total += int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return 0.0
    return total / ticks


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


# --- Scenarios, picked from the database ------------------------------------------------------


def pick_scenarios() -> tuple[list[Scenario], dict]:
    from django.db import connection
    from django.db.models import Count, Q

    from backoffice.catalog.models import Category, Product

    active = Product.objects.filter(is_active=True)
    total = active.count()
    if not total:
        raise SystemExit("The database holds no published product: run "
                         "`python manage.py generate_catalog --products 100000 --seed 1` first.")
    roots = Category.objects.filter(parent__isnull=True, is_active=True)
    best, best_count = None, -1
    for root in roots:
        n = active.filter(category__tree_id=root.tree_id, category__lft__gte=root.lft,
                          category__lft__lte=root.rght).count()
        if n > best_count:
            best, best_count = root, n
    deep = min(DEEP_PAGE, max(1, math.ceil(total / PAGE_SIZE)))
    middle = active.order_by("id").values_list("id", flat=True)[total // 2]
    product = (active.filter(id__gte=middle).annotate(n=Count("variants", filter=Q(
        variants__is_active=True))).filter(n__gt=1).order_by("id").first()
        or active.order_by("id").first())
    info = {
        "vendor": connection.vendor, "products": total, "category": best.path if best else "",
        "category_products": best_count, "deep_page": deep, "slug": product.slug,
    }
    listing = f"/api/v1/products?page_size={PAGE_SIZE}"
    scenarios = [
        Scenario("list page 1", listing, f"/api/v1/products?page_size={PAGE_SIZE}"),
    ]
    if best is not None:
        scenarios.append(Scenario(
            f"category {best.path}, by price",
            f"/api/v1/products?category={best.path}&ordering=price&page_size={PAGE_SIZE}",
            f"/api/v1/products?category={best.path}&ordering=price_min",
        ))
    scenarios += [
        Scenario(f"list page {deep}", f"/api/v1/products?page={deep}&page_size={PAGE_SIZE}",
                 f"/api/v1/products?page={deep}"),
        Scenario("product detail", f"/api/v1/products/{product.slug}", None),
    ]
    return scenarios, info


def count_queries_in_child(settings_module: str, paths: list[str], data_dir: Path) -> dict:
    """Queries and status of one request per path, in a fresh process, cachalot disabled."""
    result = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, __file__, "--count-queries", *paths],
        env=bench_env(data_dir, settings_module), capture_output=True, text=True, timeout=600,
        check=False,
    )
    if result.returncode:
        print(result.stderr[-3000:], file=sys.stderr)
        raise SystemExit(f"counting queries with {settings_module} failed")
    return json.loads(result.stdout.strip().splitlines()[-1])


def count_queries(paths: list[str]) -> None:
    """The child's side: prints {path: [status, queries, bytes]} as one JSON line."""
    import django

    django.setup()
    from cachalot.api import cachalot_disabled
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")
    client.get(paths[0])  # first request: URLconf, schema and connection setup
    out = {}
    with cachalot_disabled():
        for path in paths:
            with CaptureQueriesContext(connection) as ctx:
                response = client.get(path)
            out[path] = [response.status_code, len(ctx.captured_queries), len(response.content)]
    print(json.dumps(out))


# --- Serving and loading ----------------------------------------------------------------------


class Server:
    def __init__(self, settings_module: str, data_dir: Path, log_path: Path) -> None:
        self.port = free_port()
        self.log = log_path.open("w")
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py",
             "--bind", f"127.0.0.1:{self.port}", "backoffice.wsgi"],
            cwd=ROOT, env=bench_env(data_dir, settings_module, self.port),
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self, path: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.flush()
                tail = Path(self.log.name).read_text(errors="replace")[-3000:]
                raise SystemExit(f"gunicorn exited with {self.process.returncode}:\n{tail}")
            try:
                status, _headers, _body = self.get(path)
                if status == 200:
                    return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.3)
        raise SystemExit(f"gunicorn did not answer {path} within {timeout:.0f} s")

    def get(self, path: str) -> tuple[int, dict, bytes]:
        try:
            with urllib.request.urlopen(self.url(path), timeout=30) as response:  # noqa: S310
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not match:
        raise ValueError(f"unexpected wrk duration {text!r}")
    return float(match[1]) * UNIT_MS[match[2]]


def run_wrk(url: str, seconds: int, connections: int, threads: int) -> Load:
    result = subprocess.run(  # noqa: S603 - wrk from PATH, our arguments
        [shutil.which("wrk") or "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s",
         "--timeout", "10s", "--latency", url],
        capture_output=True, text=True, timeout=seconds + 60, check=False,
    )
    out = result.stdout
    if result.returncode:
        raise SystemExit(f"wrk failed: {result.stderr or out}")
    load = Load()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    load.requests_per_s = float(rps[1]) if rps else 0.0
    for percent, attr in (("50", "p50_ms"), ("99", "p99_ms")):
        match = re.search(rf"^\s+{percent}%\s+(\S+)", out, re.MULTILINE)
        if match:
            setattr(load, attr, _ms(match[1]))
    problems = []
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non_2xx:
        problems.append(f"{non_2xx[1]} non-2xx")
    sock = re.search(r"Socket errors:(.*)", out)
    if sock:
        problems.append("socket errors:" + sock[1].strip())
    total = re.search(r"(\d+) requests in", out)
    load.extra["requests"] = int(total[1]) if total else 0
    load.errors = "; ".join(problems)
    return load


def server_timing(headers: dict) -> tuple[int | None, str]:
    value = headers.get("Server-Timing", "")
    queries = re.search(r'desc="(\d+) queries"', value)
    db = re.search(r"db;dur=([\d.]+)", value)
    total = re.search(r"total;dur=([\d.]+)", value)
    durations = (f"db {float(db[1]):.1f} ms / total {float(total[1]):.1f} ms"
                 if db and total else "")
    return (int(queries[1]) if queries else None), durations


def benchmark_server(label: str, settings_module: str, paths: list[str], data_dir: Path,
                     args: argparse.Namespace) -> dict[str, Load]:
    log_path = data_dir / f"gunicorn-{label}.log"
    server = Server(settings_module, data_dir, log_path)
    results: dict[str, Load] = {}
    try:
        server.wait_ready(paths[0])
        print(f"{label}: gunicorn on 127.0.0.1:{server.port} (2 sync workers, {settings_module})",
              flush=True)
        for path in paths:
            status, _headers, body = server.get(path)
            if status != 200:
                raise SystemExit(f"{label}: {path} answered {status}: {body[:300]!r}")
            run_wrk(server.url(path), args.warmup, args.connections, args.threads)
            cpu_before, machine_before = process_tree_cpu(server.process.pid), machine_cpu()
            load = run_wrk(server.url(path), args.duration, args.connections, args.threads)
            cpu_after, machine_after = process_tree_cpu(server.process.pid), machine_cpu()
            done = load.extra.get("requests") or 0
            if done:
                load.cpu_ms = (cpu_after - cpu_before) * 1000 / done
            if machine_after[1] > machine_before[1]:
                load.machine_busy = ((machine_after[0] - machine_before[0])
                                     / (machine_after[1] - machine_before[1]))
            _status, headers, body = server.get(path)
            load.queries_warm, load.server_ms = server_timing(headers)
            load.extra["bytes"] = len(body)
            results[path] = load
            print(f"  {path}: {load.requests_per_s:.1f} req/s, p50 {load.p50_ms:.1f} ms, "
                  f"p99 {load.p99_ms:.1f} ms, warm request {load.queries_warm} queries "
                  f"({load.server_ms}), {len(body) / 1024:.1f} KiB; gunicorn CPU "
                  f"{load.cpu_ms:.1f} ms/request, machine CPUs {load.machine_busy:.0%} busy"
                  + (f"  [{load.errors}]" if load.errors else ""), flush=True)
    finally:
        server.stop()
    return results


# --- Report -----------------------------------------------------------------------------------


def _q(load: Load | None) -> str:
    if load is None:
        return "-"
    uncached = "?" if load.queries_uncached is None else str(load.queries_uncached)
    warm = "?" if load.queries_warm is None else str(load.queries_warm)
    return f"{uncached} ({warm})"


def print_table(scenarios: list[Scenario], ours: dict[str, Load], drf: dict[str, Load]) -> None:
    header = (f"{'scenario':<32} {'ours req/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'queries':>8} | "
              f"{'DRF req/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'queries':>9} | {'ratio':>6}")
    print()
    print(header)
    print("-" * len(header))
    for scenario in scenarios:
        mine = ours.get(scenario.ours)
        theirs = drf.get(scenario.drf) if scenario.drf else None
        ratio = (f"{mine.requests_per_s / theirs.requests_per_s:5.1f}x"
                 if mine and theirs and theirs.requests_per_s else "-")
        left = (f"{mine.requests_per_s:>10.1f} {mine.p50_ms:>7.1f} {mine.p99_ms:>7.1f} "
                f"{_q(mine):>8}" if mine else f"{'-':>10} {'-':>7} {'-':>7} {'-':>8}")
        right = (f"{theirs.requests_per_s:>9.1f} {theirs.p50_ms:>7.1f} {theirs.p99_ms:>7.1f} "
                 f"{_q(theirs):>9}" if theirs else f"{'-':>9} {'-':>7} {'-':>7} {'-':>9}")
        print(f"{scenario.name[:32]:<32} {left} | {right} | {ratio:>6}")
    print("queries: per request with nothing cached (cachalot disabled), and in brackets what a "
          "request to the warm server still sent to the database (Server-Timing).")


def verdict(scenarios: list[Scenario], ours: dict[str, Load], drf: dict[str, Load]) -> None:
    page1 = ours.get(scenarios[0].ours)
    if page1 is None:
        return
    checks = [
        ("page 1 >= 300 req/s", page1.requests_per_s >= 300, f"{page1.requests_per_s:.0f}"),
        ("page 1 p99 < 60 ms", page1.p99_ms < 60, f"{page1.p99_ms:.1f} ms"),
    ]
    deep = next((ours.get(s.ours) for s in scenarios if s.name.startswith("list page ")
                 and s.name != "list page 1"), None)
    if deep is not None and page1.requests_per_s:
        share = deep.requests_per_s / page1.requests_per_s
        checks.append(("deep page as fast as page 1 (>= 90%)", share >= 0.9, f"{share:.0%}"))
    for scenario in scenarios:
        load = ours.get(scenario.ours)
        if load is not None and load.queries_uncached is not None:
            checks.append((f"{scenario.name}: <= 4 queries", load.queries_uncached <= 4,
                           str(load.queries_uncached)))
        theirs = drf.get(scenario.drf) if scenario.drf else None
        if load and theirs and theirs.requests_per_s:
            ratio = load.requests_per_s / theirs.requests_per_s
            checks.append((f"{scenario.name}: >= 5x DRF", ratio >= 5, f"{ratio:.1f}x"))
    print()
    for name, ok, value in checks:
        print(f"  {'ok  ' if ok else 'MISS'}  {name}: {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=15, help="measured seconds per scenario")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up seconds per scenario")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-baseline", action="store_true", help="don't run the DRF listing")
    parser.add_argument("--count-queries", nargs="+", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.count_queries:
        count_queries(args.count_queries)
        return
    if not shutil.which("wrk"):
        print("wrk is not installed: `apt-get install -y wrk` (Debian/Ubuntu) or "
              "`brew install wrk` (macOS), then run this again.", file=sys.stderr)
        sys.exit(2)
    if not args.skip_baseline:
        try:
            import django_filters  # noqa: F401
            import rest_framework  # noqa: F401
        except ImportError:
            print("The DRF baseline needs the bench extra: pip install -e '.[bench]' "
                  "(make bench-api does it), or pass --skip-baseline.", file=sys.stderr)
            sys.exit(2)

    data_dir = Path(tempfile.mkdtemp(prefix="api-bench-"))
    try:
        os.environ.update(bench_env(data_dir, OURS_SETTINGS))
        import django

        django.setup()
        from django.conf import settings
        from django.db import connections

        scenarios, info = pick_scenarios()
        connections.close_all()
        database = settings.DATABASES["default"]
        print(f"database: {info['vendor']} {database.get('NAME')} on "
              f"{database.get('HOST') or 'a local file'}, {info['products']} published products; "
              f"category {info['category']!r} holds {info['category_products']}; deep page "
              f"{info['deep_page']}; detail {info['slug']!r}")
        if info["vendor"] != "postgresql":
            print("note: the budget is measured on PostgreSQL (set DATABASE_URL)")
        print(f"cachalot: {'on' if settings.CACHALOT_ENABLED else 'off'} (default config, "
              f"a fresh {settings.CACHES['default']['BACKEND'].rsplit('.', 1)[-1]}); "
              f"wrk: {args.connections} connections, {args.threads} threads, {args.warmup} s "
              f"warm-up + {args.duration} s per scenario; CPUs: {os.cpu_count()}")
        print(f"load average before: {loadavg()}", flush=True)

        ours_paths = [s.ours for s in scenarios]
        drf_paths = [s.drf for s in scenarios if s.drf]
        counted = count_queries_in_child(OURS_SETTINGS, ours_paths, data_dir)
        for path, (status, _n, _size) in counted.items():
            if status != 200:
                raise SystemExit(f"{path} answered {status} in-process")
        ours = benchmark_server("ours", OURS_SETTINGS, ours_paths, data_dir, args)
        for path, load in ours.items():
            load.queries_uncached = counted[path][1]
        print(f"load average after ours: {loadavg()}", flush=True)
        drf: dict[str, Load] = {}
        if not args.skip_baseline:
            counted = count_queries_in_child(DRF_SETTINGS, drf_paths, data_dir)
            drf = benchmark_server("drf", DRF_SETTINGS, drf_paths, data_dir, args)
            for path, load in drf.items():
                load.queries_uncached = counted[path][1]
            print(f"load average after DRF: {loadavg()}", flush=True)
        print_table(scenarios, ours, drf)
        verdict(scenarios, ours, drf)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
