"""API benchmark: the storefront product listing and detail under load, ours vs plain DRF.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/backoffice_a make bench-api

It needs a database that already holds a catalog (``manage.py generate_catalog --products 100000
--seed 1`` makes the 100k-product one the budget speaks of), and ``wrk`` (``apt-get install -y
wrk``). It writes nothing to the database.

What it does:

1. picks the scenarios from the database. *Hit* scenarios request one URL again and again, as a
   popular page is: page 1 of the listing, the top-level category with the most products ordered
   by price, page 2,000 (or the deepest page there is), and the detail of a product from the
   middle of the catalog; after the warm-up they are answered by the storefront response cache.
   *Miss* scenarios make every request a URL nobody asked before (a wrk Lua script walks a list,
   the warm-up a different one), as a store's long tail of URLs does: page 1 with a new
   (ignored) query parameter each time (the cost of building page 1), the listing's pages one
   after another, filter sets (category x ordering x price floor x page), and product details;
2. counts the queries of one request per scenario in a separate process with Django's test client,
   cachalot disabled and the response cache off (the work a request costs when nothing is
   cached);
3. serves the app with gunicorn as deployed (``deploy/gunicorn.conf.py``, 2 sync workers, DEBUG
   off, LOG_LEVEL=WARNING, cachalot and the response cache as configured: on by default, with a
   fresh file cache) on a loopback port, and loads each scenario with ``wrk`` (8 connections, 2
   threads, a warm-up and then a measured run with ``--latency``): requests/s, p50, p99, the
   share of responses served from the response cache (``X-Cache``) and the queries per response
   the server sent to the database over the whole run (its ``Server-Timing`` header, read by the
   Lua script for every response);
4. does the same for a plain Django REST Framework + django-filter listing
   (``benchmarks/drf_baseline``: nested ModelSerializers, PageNumberPagination of 24,
   DjangoFilterBackend + OrderingFilter, no select_related or prefetch_related), served the same
   way on another port, one server at a time;
5. prints a table and the ratios (a miss of page 1 is compared with DRF's page 1, which has no
   cache). Budget (DESIGN.md): at least 300 req/s on page 1 with p99 under 60 ms, deep pages as
   fast as page 1, at most 4 queries, at least 5x the DRF baseline.

``--cache-off`` serves ours with ``STOREFRONT_CACHE_TIMEOUT=0`` (no response cache: every
scenario is then built per request, with cachalot as configured).

It prints numbers; it is not a test.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
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
MISS_URLS = 20000  # product details walked (a measured run makes a few thousand requests)
ORDERINGS = ["newest", "price", "-price", "name", "rating"]
PRICE_FLOORS = [0, 5, 10, 15, 20, 30, 40, 50, 75, 100, 150, 200]


@dataclass
class Scenario:
    name: str
    ours: str  # the path on our API (a miss scenario's first path)
    drf: str | None  # the same listing on the DRF baseline, if it has one
    # Miss scenarios: the paths the Lua script walks (one per request), or ``bust``: ``ours``
    # with a new, ignored query parameter each time.
    paths: list[str] | None = None
    bust: bool = False

    @property
    def miss(self) -> bool:
        return self.paths is not None or self.bust


@dataclass
class Load:
    requests_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    errors: str = ""
    queries_uncached: int | None = None  # in-process, cachalot disabled
    queries_warm: int | None = None  # Server-Timing of a request to the warm server
    responses: int = 0  # counted by the Lua script over the measured run
    hits: int = 0  # X-Cache: hit
    queries_run: int | None = None  # Server-Timing query counts summed over the measured run
    server_ms: str = ""  # Server-Timing db / total durations of that request
    cpu_ms: float = 0.0  # gunicorn CPU per request during the measured run
    machine_busy: float = 0.0  # share of the machine's CPUs busy during the measured run
    # Share of the machine's CPU time used by neither gunicorn nor wrk during the measured run:
    # PostgreSQL, and anything else running on the machine (a sign the run was disturbed).
    other_cpu: float = 0.0
    extra: dict = field(default_factory=dict)


# --- Environment ------------------------------------------------------------------------------


def bench_env(data_dir: Path, settings_module: str, port: int | None = None, *,
              cache_off: bool = False) -> dict[str, str]:
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
    if cache_off:
        env["STOREFRONT_CACHE_TIMEOUT"] = "0"
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


def children_cpu() -> float:
    """CPU seconds of this process's finished children (the wrk runs)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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
    # Miss scenarios: lists long enough that a measured run never comes back to a URL.
    pages = math.ceil(total / PAGE_SIZE)
    rng = random.Random(1)  # noqa: S311 - a fixed sample of URLs, not a secret
    all_slugs = list(active.order_by("id").values_list("slug", flat=True))
    slugs = rng.sample(all_slugs, min(MISS_URLS, len(all_slugs)))
    categories = sorted(Category.objects.filter(is_active=True).values_list("path", flat=True))
    filter_paths = [
        f"/api/v1/products?category={c}&ordering={o}&min_price={m}&page={n}"
        f"&page_size={PAGE_SIZE}"
        for c, o, m, n in itertools.product(categories, ORDERINGS, PRICE_FLOORS, (1, 2, 3))
    ]
    rng.shuffle(filter_paths)
    scenarios += [
        Scenario("miss: page 1, each a new URL", listing, f"/api/v1/products?page_size={PAGE_SIZE}",
                 bust=True),
        Scenario(f"miss: pages 1..{pages} in turn",
                 f"/api/v1/products?page={pages // 2}&page_size={PAGE_SIZE}", None,
                 paths=[f"/api/v1/products?page={n}&page_size={PAGE_SIZE}"
                        for n in range(1, pages + 1)]),
        Scenario("miss: filter sets", filter_paths[0], None, paths=filter_paths),
        Scenario("miss: product details", f"/api/v1/products/{slugs[0]}", None,
                 paths=[f"/api/v1/products/{slug}" for slug in slugs]),
    ]
    return scenarios, info


def count_queries_in_child(settings_module: str, paths: list[str], data_dir: Path) -> dict:
    """Queries and status of one request per path, in a fresh process, cachalot disabled and
    the response cache off."""
    result = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, __file__, "--count-queries", *paths],
        env=bench_env(data_dir, settings_module, cache_off=True), capture_output=True, text=True,
        timeout=600, check=False,
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
    def __init__(self, settings_module: str, data_dir: Path, log_path: Path, *,
                 cache_off: bool = False) -> None:
        self.port = free_port()
        self.log = log_path.open("w")
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py",
             "--bind", f"127.0.0.1:{self.port}", "backoffice.wsgi"],
            cwd=ROOT, env=bench_env(data_dir, settings_module, self.port, cache_off=cache_off),
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def restarts(self) -> int:
        """Workers gunicorn restarted so far (max_requests), from its log."""
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace").count("Autorestarting worker")

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


LUA = r"""
-- Written by benchmarks/api_bench.py. Counts X-Cache outcomes and Server-Timing queries of every
-- response; with a path list, each request takes the next path (threads interleave).
local paths = {%(paths)s}
local suffix = %(suffix)s
local bust = %(bust)s
local threads = {}

function setup(thread)
  thread:set("index", #threads)
  table.insert(threads, thread)
end

function init(args)
  nthreads = tonumber(args[1])
  counter = 0
  responses, hits, misses, queries, timed = 0, 0, 0, 0, 0
end

if #paths > 0 or bust then
  request = function()
    local n = index + counter * nthreads
    counter = counter + 1
    local path
    if bust then
      path = wrk.path .. "&_bust=" .. suffix .. "-" .. n
    else
      path = paths[(n %% #paths) + 1] .. suffix
    end
    return wrk.format("GET", path)
  end
end

function response(status, headers, body)
  responses = responses + 1
  local outcome = headers["X-Cache"] or headers["x-cache"]
  if outcome == "hit" then hits = hits + 1 elseif outcome == "miss" then misses = misses + 1 end
  local timing = headers["Server-Timing"] or headers["server-timing"]
  if timing then
    local q = string.match(timing, 'desc="(%%d+) queries"')
    if q then queries = queries + tonumber(q); timed = timed + 1 end
  end
end

function done(summary, latency, requests)
  local r, h, m, q, t = 0, 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    r = r + thread:get("responses"); h = h + thread:get("hits"); m = m + thread:get("misses")
    q = q + thread:get("queries"); t = t + thread:get("timed")
  end
  io.write(string.format("STATS responses=%%d hits=%%d misses=%%d queries=%%d timed=%%d\n",
                         r, h, m, q, t))
end
"""


def lua_script(path: Path, scenario: Scenario | None, *, warmup: bool) -> Path:
    """The wrk script for one run; the warm-up's URLs never repeat the measured run's."""
    paths = scenario.paths if scenario is not None and scenario.paths else []
    suffix = ("&_warmup=1" if paths else "w") if warmup else ("" if paths else "m")
    path.write_text(LUA % {
        "paths": ", ".join(json.dumps(p) for p in paths),
        "suffix": json.dumps(suffix),
        "bust": "true" if scenario is not None and scenario.bust else "false",
    })
    return path


def run_wrk(url: str, seconds: int, connections: int, threads: int,
            script: Path | None = None) -> Load:
    command = [shutil.which("wrk") or "wrk", f"-t{threads}", f"-c{connections}",
               f"-d{seconds}s", "--timeout", "10s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    command.append(url)
    if script is not None:
        command += ["--", str(threads)]
    result = subprocess.run(  # noqa: S603 - wrk from PATH, our arguments
        command, capture_output=True, text=True, timeout=seconds + 60, check=False,
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
    stats = re.search(r"STATS responses=(\d+) hits=(\d+) misses=(\d+) queries=(\d+) "
                      r"timed=(\d+)", out)
    if stats:
        load.responses, load.hits = int(stats[1]), int(stats[2])
        load.queries_run = int(stats[4]) if int(stats[5]) == load.responses else None
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


def benchmark_server(label: str, settings_module: str, runs: list[tuple[str, Scenario]],
                     data_dir: Path, args: argparse.Namespace, *,
                     cache_off: bool = False) -> dict[str, Load]:
    """Load each (path, scenario) in turn; results by scenario name."""
    log_path = data_dir / f"gunicorn-{label}.log"
    server = Server(settings_module, data_dir, log_path, cache_off=cache_off)
    results: dict[str, Load] = {}
    try:
        server.wait_ready(runs[0][0])
        print(f"{label}: gunicorn on 127.0.0.1:{server.port} (2 sync workers, {settings_module}"
              f"{', response cache off' if cache_off else ''})", flush=True)
        for path, scenario in runs:
            status, _headers, body = server.get(path)
            if status != 200:
                raise SystemExit(f"{label}: {path} answered {status}: {body[:300]!r}")
            scripts = data_dir / "wrk"
            scripts.mkdir(exist_ok=True)
            run_wrk(server.url(path), args.warmup, args.connections, args.threads,
                    lua_script(scripts / "warmup.lua", scenario, warmup=True))
            cpu_before, machine_before = process_tree_cpu(server.process.pid), machine_cpu()
            wrk_before = children_cpu()
            restarts = server.restarts()
            load = run_wrk(server.url(path), args.duration, args.connections, args.threads,
                           lua_script(scripts / "run.lua", scenario, warmup=False))
            cpu_after, machine_after = process_tree_cpu(server.process.pid), machine_cpu()
            wrk_cpu = children_cpu() - wrk_before
            load.extra["restarts"] = server.restarts() - restarts
            done = load.extra.get("requests") or 0
            if done:
                load.cpu_ms = (cpu_after - cpu_before) * 1000 / done
            if machine_after[1] > machine_before[1]:
                total = machine_after[1] - machine_before[1]
                busy = machine_after[0] - machine_before[0]
                load.machine_busy = busy / total
                ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
                ours_ticks = (cpu_after - cpu_before + wrk_cpu) * ticks
                load.other_cpu = max(0.0, busy - ours_ticks) / total
            probe = path if not scenario.miss else (
                (scenario.paths[-1] if scenario.paths else path) + "&_probe=1"
                if "?" in (scenario.paths[-1] if scenario.paths else path)
                else (scenario.paths[-1] if scenario.paths else path) + "?_probe=1")
            _status, headers, body = server.get(probe)
            load.queries_warm, load.server_ms = server_timing(headers)
            load.extra["bytes"] = len(body)
            load.extra["probe_cache"] = headers.get("X-Cache", "-")
            results[scenario.name] = load
            share = f"{load.hits / load.responses:.0%} hits" if load.responses else "hits ?"
            per = (f"{load.queries_run / load.responses:.2f} queries/response"
                   if load.responses and load.queries_run is not None else "queries ?")
            print(f"  {scenario.name}: {path[:70]}{'...' if len(path) > 70 else ''}\n"
                  f"    {load.requests_per_s:.1f} req/s, p50 {load.p50_ms:.1f} ms, "
                  f"p99 {load.p99_ms:.1f} ms, {share}, {per} over the run; "
                  f"{'probe' if scenario.miss else 'warm'} request "
                  f"({load.extra['probe_cache']}) {load.queries_warm} queries "
                  f"({load.server_ms}), {len(body) / 1024:.1f} KiB; gunicorn CPU "
                  f"{load.cpu_ms:.1f} ms/request, machine CPUs {load.machine_busy:.0%} busy "
                  f"({load.other_cpu:.0%} by neither gunicorn nor wrk), "
                  f"{load.extra['restarts']} worker restarts"
                  + (f"  [{load.errors}]" if load.errors else ""), flush=True)
    finally:
        server.stop()
    return results


# --- Report -----------------------------------------------------------------------------------


def _q(load: Load | None) -> str:
    if load is None:
        return "-"
    uncached = "?" if load.queries_uncached is None else str(load.queries_uncached)
    run = ("?" if load.queries_run is None or not load.responses
           else f"{load.queries_run / load.responses:.2f}")
    return f"{uncached} ({run})"


def _hits(load: Load | None) -> str:
    if load is None or not load.responses:
        return "-"
    return f"{load.hits / load.responses:.0%}"


def print_table(scenarios: list[Scenario], ours: dict[str, Load], drf: dict[str, Load]) -> None:
    header = (f"{'scenario':<32} {'ours req/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'hits':>5} "
              f"{'queries':>11} {'other':>5} | {'DRF req/s':>9} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'queries':>12} | {'ratio':>6}")
    print()
    print(header)
    print("-" * len(header))
    for scenario in scenarios:
        mine = ours.get(scenario.name)
        theirs = drf.get(scenario.drf) if scenario.drf else None
        ratio = (f"{mine.requests_per_s / theirs.requests_per_s:5.1f}x"
                 if mine and theirs and theirs.requests_per_s else "-")
        left = (f"{mine.requests_per_s:>10.1f} {mine.p50_ms:>7.1f} {mine.p99_ms:>7.1f} "
                f"{_hits(mine):>5} {_q(mine):>11} {mine.other_cpu:>5.0%}" if mine
                else f"{'-':>10} {'-':>7} {'-':>7} {'-':>5} {'-':>11} {'-':>5}")
        right = (f"{theirs.requests_per_s:>9.1f} {theirs.p50_ms:>7.1f} {theirs.p99_ms:>7.1f} "
                 f"{_q(theirs):>12}" if theirs else f"{'-':>9} {'-':>7} {'-':>7} {'-':>12}")
        print(f"{scenario.name[:32]:<32} {left} | {right} | {ratio:>6}")
    print("hits: responses served from the storefront response cache (X-Cache) over the measured "
          "run.\nqueries: per request with nothing cached (in-process, cachalot disabled, "
          "response cache off), and in brackets the average the server sent to the database "
          "per response over the measured run (Server-Timing).\nother: share of the machine's "
          "CPU used by neither gunicorn nor wrk during the run (PostgreSQL, and anything else "
          "running: a disturbed run shows it).\nratio: ours / DRF; a miss of "
          "page 1 is compared with DRF's page 1 (which caches nothing).")


def verdict(scenarios: list[Scenario], ours: dict[str, Load], drf: dict[str, Load]) -> None:
    page1 = ours.get(scenarios[0].name)
    if page1 is None:
        return
    checks = [
        ("page 1 >= 300 req/s", page1.requests_per_s >= 300, f"{page1.requests_per_s:.0f}"),
        ("page 1 p99 < 60 ms", page1.p99_ms < 60, f"{page1.p99_ms:.1f} ms"),
    ]
    deep = next((ours.get(s.name) for s in scenarios if s.name.startswith("list page ")
                 and s.name != "list page 1"), None)
    if deep is not None and page1.requests_per_s:
        share = deep.requests_per_s / page1.requests_per_s
        checks.append(("deep page as fast as page 1 (>= 90%)", share >= 0.9, f"{share:.0%}"))
    for scenario in scenarios:
        load = ours.get(scenario.name)
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
    parser.add_argument("--cache-off", action="store_true",
                        help="serve ours with the response cache off (STOREFRONT_CACHE_TIMEOUT=0)")
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
              f"response cache: "
              f"{'off' if args.cache_off else f'{settings.STOREFRONT_CACHE_TIMEOUT} s'}; "
              f"wrk: {args.connections} connections, {args.threads} threads, {args.warmup} s "
              f"warm-up + {args.duration} s per scenario; CPUs: {os.cpu_count()}")
        print(f"load average before: {loadavg()}", flush=True)

        ours_runs = [(s.ours, s) for s in scenarios]
        drf_runs = list({s.drf: (s.drf, Scenario(s.drf, s.drf, None))
                         for s in scenarios if s.drf}.values())
        counted = count_queries_in_child(OURS_SETTINGS, [p for p, _ in ours_runs], data_dir)
        for path, (status, _n, _size) in counted.items():
            if status != 200:
                raise SystemExit(f"{path} answered {status} in-process")
        ours = benchmark_server("ours", OURS_SETTINGS, ours_runs, data_dir, args,
                                cache_off=args.cache_off)
        for scenario in scenarios:
            if scenario.name in ours:
                ours[scenario.name].queries_uncached = counted[scenario.ours][1]
        print(f"load average after ours: {loadavg()}", flush=True)
        drf: dict[str, Load] = {}
        if not args.skip_baseline:
            counted = count_queries_in_child(DRF_SETTINGS, [p for p, _ in drf_runs], data_dir)
            drf = benchmark_server("drf", DRF_SETTINGS, drf_runs, data_dir, args)
            for path, load in drf.items():
                load.queries_uncached = counted[path][1]
            print(f"load average after DRF: {loadavg()}", flush=True)
        print_table(scenarios, ours, drf)
        verdict(scenarios, ours, drf)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
