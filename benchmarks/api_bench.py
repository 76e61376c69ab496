"""API benchmark: the storefront product listing and detail on the database path, ours vs plain DRF.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres BENCH_ARGS="--catalog 100000" \
        make bench-api                    # a fresh catalog in bench_api_<pid>, dropped at the end
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/backoffice_a make bench-api   # an existing one

It needs ``wrk`` (``apt-get install -y wrk``) and a PostgreSQL database holding a catalog: an
existing one (``manage.py generate_catalog --products 100000 --seed 1`` makes the budget's size;
it is only read), or with ``--catalog N`` a fresh database ``bench_api_<pid>`` on DATABASE_URL's
server, migrated and filled by ``generate_catalog --products N --seed 1``, dropped at the end.
Products without a kept storefront answer get one first (``keep_answers``, which writes those
answers): the runs measure a shop whose products have been viewed since their last change.

The verdicts are on the **database path**: every answer is built from the database.

- Ours is served with the response cache off (``STOREFRONT_CACHE_TIMEOUT=0``, which also stops
  caching listing counts: every page counts, or asks the planner for a listing above
  ``LISTING_EXACT_COUNT_UP_TO``) and the query cache off
  (``CACHALOT_ENABLED=0``). What the database keeps, the shop keeps too: a large listing's
  estimate and deep-page anchors (``ListingEstimate``, ``ListingAnchors``: stale after any
  write to products or categories, made again on the next read), like the kept answers.
  The DRF baseline (``benchmarks/drf_baseline``: nested ModelSerializers,
  PageNumberPagination, DjangoFilterBackend + OrderingFilter, no prefetching) is served with
  cachalot off too.
- No URL is asked twice: each wrk run walks a list of URLs (a Lua script, one URL per request,
  from its own starting point) and tags every URL with the run, so neither a warm-up nor an
  earlier round nor the other server's run ever asks a URL again. Scenarios: page 1 (made unique
  by an ignored parameter), the deep pages from the middle page (or page 2,000 if that comes
  first) to the last, by number and by cursor (``after``, as a storefront following ``next``
  asks them; the baseline's deep pages by number are its comparison), filter sets (category x
  ordering x price floor x pages 1-3 that exist, shuffled) and product details.
- Both servers run at once under gunicorn as deployed (``deploy/gunicorn.conf.py``, 2 sync
  workers, ``DEBUG=0``, ``LOG_LEVEL=WARNING``, a fresh file cache) on loopback ports, and every
  scenario is loaded on ours and on DRF in turn, ``--rounds`` times, the order swapped each
  round; wrk: 8 connections, 2 threads, a warm-up and a measured run with ``--latency``.

For every run it prints requests/s, p50, p99, the queries and database milliseconds per response
the server reported (``Server-Timing``, read by the Lua script for every response), gunicorn CPU
per request, the share of the machine's CPU used by neither gunicorn nor wrk (PostgreSQL and
anything else running: the reports benchmark, say) and the load average. Then a table of the
medians over the rounds, the ratios (ours / DRF, per round, median) and the verdicts, PASS or
FAIL, for the goals (DESIGN.md): page 1 at least 300 req/s with p99 under 60 ms, the deep pages
(by number, and by cursor) within 10% of page 1, at most 4 queries a listing page, listings at
least 5x the DRF baseline, the product detail at least 3x.

Last, unless ``--skip-cache-hit``, page 1 asked again and again of a server with both caches on
as by default: printed as "cache hit (not a verdict)", what a popular page costs, never checked.

``--strict`` exits 1 when a goal fails. It prints numbers; it is not a test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

OURS_SETTINGS = "backoffice.settings"
DRF_SETTINGS = "benchmarks.drf_baseline.settings"
PAGE_SIZE = 24
DEEP_PAGE = 2000
MISS_URLS = 20000  # product details walked (a measured run makes a few thousand requests)
# Our orderings and the DRF baseline's (OrderingFilter on the same columns).
ORDERINGS = {"newest": "-created_at", "price": "price_min", "-price": "-price_min",
             "name": "name", "rating": "-rating_average"}
PRICE_FLOORS = [0, 5, 10, 15, 20, 30, 40, 50, 75, 100, 150, 200]
LISTING_RATIO, DETAIL_RATIO = 5.0, 3.0


@dataclass
class Scenario:
    name: str
    ours: list[str]  # the paths walked on our API, one per request
    drf: list[str]  # the same answers asked of the DRF baseline
    ratio: float  # the goal: at least this many times the baseline's requests/s
    listing: bool = True


@dataclass
class Load:
    requests_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    errors: str = ""
    requests: int = 0
    responses: int = 0  # counted by the Lua script over the measured run
    hits: int = 0  # X-Cache: hit
    queries: float | None = None  # Server-Timing queries per response over the run
    db_ms: float | None = None  # Server-Timing database ms per response over the run
    repeats: int = 0  # requests past the length of the list: pages asked twice in the run
    cpu_ms: float = 0.0  # gunicorn CPU per request during the measured run
    machine_busy: float = 0.0  # share of the machine's CPUs busy during the measured run
    # Share of the machine's CPU time used by neither gunicorn nor wrk during the measured run:
    # PostgreSQL, and anything else running on the machine (a sign the run was disturbed).
    other_cpu: float = 0.0
    extra: dict = field(default_factory=dict)


# --- Environment ------------------------------------------------------------------------------


def bench_env(data_dir: Path, settings_module: str, port: int | None = None, *,
              cache_off: bool = False, cachalot: bool | None = None) -> dict[str, str]:
    """The server's environment. ``cache_off``: no response cache (and no cached counts);
    ``cachalot``: the query cache on or off (``None``: as the environment says, on by default)."""
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
    if cachalot is None:
        env.setdefault("CACHALOT_ENABLED", "1")
    else:
        env["CACHALOT_ENABLED"] = "1" if cachalot else "0"
    if cache_off:
        env["STOREFRONT_CACHE_TIMEOUT"] = "0"
    if port is not None:
        env["PORT"] = str(port)
    return env


def database_path_env(data_dir: Path, settings_module: str, port: int | None = None
                      ) -> dict[str, str]:
    """Both caches off: what every verdict is measured with."""
    return bench_env(data_dir, settings_module, port, cache_off=True, cachalot=False)


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


# --- A fresh catalog (--catalog) ----------------------------------------------------------------


def make_catalog(database_url: str, products: int) -> str:
    """A fresh ``bench_api_<pid>`` database on that server, migrated and filled; its URL."""
    import psycopg

    name = f"bench_api_{os.getpid()}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(database_url)
    url = urlunsplit(parts._replace(path=f"/{name}"))
    env = {**os.environ, "DATABASE_URL": url, "DEBUG": "1", "LOG_LEVEL": "WARNING",
           "DATA_DIR": tempfile.mkdtemp(prefix="api-bench-catalog-"),
           "DJANGO_SETTINGS_MODULE": OURS_SETTINGS}
    started = time.perf_counter()
    for command in (["migrate", "--noinput", "-v0"],
                    ["generate_catalog", "--products", str(products), "--seed", "1"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env,  # noqa: S603
                       check=True)
    shutil.rmtree(env["DATA_DIR"], ignore_errors=True)
    print(f"catalog: {name} made with {products} products in "
          f"{time.perf_counter() - started:.0f} s", flush=True)
    return url


def drop_database(admin_url: str, url: str) -> None:
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    if not name.startswith("bench_api_"):
        return
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- Scenarios, picked from the database ------------------------------------------------------


def deep_cursors(active, first: int, last: int) -> list[str]:
    """The ``after`` cursors of pages ``first``..``last`` of the newest-first listing: each the
    last product of the page before, read from the database in the listing's order."""
    from backoffice.catalog.storefront import ORDERINGS, encode_cursor

    rows = list(active.order_by(*ORDERINGS["newest"]).values("id", "created_at"))
    return [encode_cursor("newest", rows[(n - 1) * PAGE_SIZE - 1])
            for n in range(max(first, 2), last + 1)]


def keep_answers() -> None:
    """The steady state the verdicts are about: every product's storefront answer kept, as
    after a first view of each or the nightly job (``generate_catalog`` keeps them; a database
    made otherwise may lack some). The first view of a product after a change builds its own;
    that is not what these runs measure."""
    from backoffice.catalog import documents
    from backoffice.catalog.models import Product

    missing = list(Product.objects.filter(is_active=True, storefront_answer__summary=None)
                   .values_list("pk", flat=True))
    if missing:
        started = time.perf_counter()
        documents.build(missing)
        print(f"kept the storefront answers of {len(missing)} products that had none, in "
              f"{time.perf_counter() - started:.1f} s", flush=True)


def pick_scenarios() -> tuple[list[Scenario], dict]:
    from django.db import connection
    from django.db.models import Count, Q

    from backoffice.catalog.models import Category, Product

    active = Product.objects.filter(is_active=True)
    total = active.count()
    if not total:
        raise SystemExit("The database holds no published product: run "
                         "`python manage.py generate_catalog --products 100000 --seed 1` first, "
                         "or pass --catalog 100000.")
    pages = max(1, math.ceil(total / PAGE_SIZE))
    deep = min(DEEP_PAGE, max(1, pages // 2))
    rng = random.Random(1)  # noqa: S311 - a fixed sample of URLs, not a secret
    all_slugs = list(active.order_by("id").values_list("slug", flat=True))
    slugs = rng.sample(all_slugs, min(MISS_URLS, len(all_slugs)))
    # Filter sets: category x price floor x ordering x pages 1-3, the pages that exist only
    # (DRF answers 404 past the last page); one count per category, read once, here.
    categories = list(Category.objects.filter(is_active=True).order_by("path"))
    combos = []
    for category in categories:
        counts = active.filter(
            category__tree_id=category.tree_id, category__lft__gte=category.lft,
            category__lft__lte=category.rght,
        ).aggregate(**{f"m{m}": Count("id", filter=Q(price_min__gte=m)) for m in PRICE_FLOORS})
        combos += [(category.path, o, m, n) for m in PRICE_FLOORS for o in ORDERINGS
                   for n in range(1, min(3, math.ceil(counts[f"m{m}"] / PAGE_SIZE)) + 1)]
    rng.shuffle(combos)
    listing = "/api/v1/products"
    info = {"vendor": connection.vendor, "products": total, "pages": pages, "deep_page": deep,
            "categories": len(categories), "filter_sets": len(combos)}
    scenarios = [
        # Page 1 again, each request made a new URL by an ignored parameter (the run's tag).
        Scenario("list page 1", [f"{listing}?page_size={PAGE_SIZE}"],
                 [f"{listing}?page_size={PAGE_SIZE}"], LISTING_RATIO),
        Scenario(f"list pages {deep}..{pages} in turn",
                 [f"{listing}?page={n}&page_size={PAGE_SIZE}" for n in range(deep, pages + 1)],
                 [f"{listing}?page={n}" for n in range(deep, pages + 1)], LISTING_RATIO),
        # The same pages asked as a storefront walking ``next`` would (the baseline has page
        # numbers only: its deep pages are the comparison).
        Scenario(f"list pages {deep}..{pages} by cursor",
                 [f"{listing}?after={cursor}&page_size={PAGE_SIZE}"
                  for cursor in deep_cursors(active, deep, pages)],
                 [f"{listing}?page={n}" for n in range(deep, pages + 1)], LISTING_RATIO),
        Scenario("filter sets",
                 [f"{listing}?category={c}&ordering={o}&min_price={m}&page={n}"
                  f"&page_size={PAGE_SIZE}" for c, o, m, n in combos],
                 [f"{listing}?category={c}&ordering={ORDERINGS[o]}&min_price={m}&page={n}"
                  for c, o, m, n in combos], LISTING_RATIO),
        Scenario("product detail", [f"{listing}/{slug}" for slug in slugs],
                 [f"{listing}/{slug}" for slug in slugs], DETAIL_RATIO, listing=False),
    ]
    return scenarios, info


# --- Serving and loading ----------------------------------------------------------------------


class Server:
    """gunicorn as deployed (``deploy/gunicorn.conf.py``) on a free loopback port; ``env`` from
    ``bench_env`` (its port is set here)."""

    def __init__(self, env: dict[str, str], log_path: Path, label: str = "") -> None:
        self.port = free_port()
        self.label = label
        self.log = log_path.open("w")
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py",
             "--bind", f"127.0.0.1:{self.port}", "backoffice.wsgi"],
            cwd=ROOT, env={**env, "PORT": str(self.port)},
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
-- Written by benchmarks/api_bench.py. Each request takes the next path of the list from this
-- run's starting point (threads interleave) and carries the run's tag, so no URL is asked twice
-- in a benchmark; counts X-Cache outcomes and the Server-Timing queries and database time of
-- every response.
local paths = {%(paths)s}
local start = %(start)d
local tag = %(tag)s
local threads = {}

function setup(thread)
  thread:set("index", #threads)
  table.insert(threads, thread)
end

function init(args)
  nthreads = tonumber(args[1])
  counter = 0
  responses, hits, queries, timed, db_us = 0, 0, 0, 0, 0
end

request = function()
  local n = start + index + counter * nthreads
  counter = counter + 1
  local path = paths[(n %% #paths) + 1]
  local sep = "?"
  if string.find(path, "?", 1, true) then sep = "&" end
  path = path .. sep .. "_run=" .. tag .. "-" .. n
  return wrk.format("GET", path)
end

function response(status, headers, body)
  responses = responses + 1
  local outcome = headers["X-Cache"] or headers["x-cache"]
  if outcome == "hit" then hits = hits + 1 end
  local timing = headers["Server-Timing"] or headers["server-timing"]
  if timing then
    local q = string.match(timing, 'desc="(%%d+) queries"')
    local db = string.match(timing, "db;dur=([%%d.]+)")
    if q then
      queries = queries + tonumber(q); timed = timed + 1
      if db then db_us = db_us + math.floor(tonumber(db) * 1000) end
    end
  end
end

function done(summary, latency, requests)
  local r, h, q, t, d = 0, 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    r = r + thread:get("responses"); h = h + thread:get("hits")
    q = q + thread:get("queries"); t = t + thread:get("timed"); d = d + thread:get("db_us")
  end
  io.write(string.format("STATS responses=%%d hits=%%d queries=%%d timed=%%d db_us=%%d\n",
                         r, h, q, t, d))
end
"""

# With a single path (page 1) every request is the same page made a new URL by its tag; with a
# list, a run asks a page twice only when it makes more requests than the list holds (printed).


def lua_script(path: Path, paths: list[str], start: int, tag: str) -> Path:
    path.write_text(LUA % {
        "paths": ", ".join(json.dumps(p) for p in paths),
        "start": start,
        "tag": json.dumps(tag),
    })
    return path


def run_wrk(url: str, seconds: int, connections: int, threads: int, script: Path) -> Load:
    command = [shutil.which("wrk") or "wrk", f"-t{threads}", f"-c{connections}",
               f"-d{seconds}s", "--timeout", "10s", "--latency", "-s", str(script), url,
               "--", str(threads)]
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
    load.requests = int(total[1]) if total else 0
    stats = re.search(r"STATS responses=(\d+) hits=(\d+) queries=(\d+) timed=(\d+) "
                      r"db_us=(\d+)", out)
    if stats:
        load.responses, load.hits = int(stats[1]), int(stats[2])
        timed = int(stats[4])
        if timed and timed == load.responses:
            load.queries = int(stats[3]) / timed
            load.db_ms = int(stats[5]) / 1000 / timed
    load.errors = "; ".join(problems)
    return load


class Runner:
    """Loads scenarios on servers, each wrk run with its own tag and starting point."""

    def __init__(self, data_dir: Path, args: argparse.Namespace) -> None:
        self.data_dir = data_dir
        self.args = args
        self.scripts = data_dir / "wrk"
        self.scripts.mkdir(exist_ok=True)
        self.runs = 0

    def load(self, server: Server, paths: list[str], label: str, spread: int = 1) -> Load:
        """A warm-up then a measured run of ``paths`` on ``server``. ``spread``: how many runs
        share this list (each starts at its own share of it)."""
        args = self.args
        share = max(1, len(paths) // max(1, spread))
        status, _headers, body = server.get(paths[0] + ("&" if "?" in paths[0] else "?")
                                            + "_run=check")
        if status != 200:
            raise SystemExit(f"{server.label}: {paths[0]} answered {status}: {body[:300]!r}")
        self.runs += 1
        warm = self.scripts / f"warm-{self.runs}.lua"
        run_wrk(server.url(paths[0]), args.warmup, args.connections, args.threads,
                lua_script(warm, paths, (self.runs * share) % len(paths), f"w{self.runs}"))
        self.runs += 1
        script = lua_script(self.scripts / f"run-{self.runs}.lua", paths,
                            (self.runs * share) % len(paths), f"m{self.runs}")
        cpu_before, machine_before = process_tree_cpu(server.process.pid), machine_cpu()
        wrk_before = children_cpu()
        restarts = server.restarts()
        load = run_wrk(server.url(paths[0]), args.duration, args.connections, args.threads,
                       script)
        cpu_after, machine_after = process_tree_cpu(server.process.pid), machine_cpu()
        wrk_cpu = children_cpu() - wrk_before
        if len(paths) > 1:
            load.repeats = max(0, load.requests - len(paths))
        load.extra["restarts"] = server.restarts() - restarts
        if load.requests:
            load.cpu_ms = (cpu_after - cpu_before) * 1000 / load.requests
        if machine_after[1] > machine_before[1]:
            total = machine_after[1] - machine_before[1]
            busy = machine_after[0] - machine_before[0]
            load.machine_busy = busy / total
            ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
            load.other_cpu = max(0.0, busy - (cpu_after - cpu_before + wrk_cpu) * ticks) / total
        print(f"  {server.label:<5} {label:<34} {load.requests_per_s:8.1f} req/s  p50 "
              f"{load.p50_ms:7.1f} ms  p99 {load.p99_ms:7.1f} ms  {_num(load.queries, 1)} "
              f"queries  db {_num(load.db_ms, 1)} ms  CPU {load.cpu_ms:5.1f} ms/request  "
              f"hits {_share(load)}  other {load.other_cpu:.0%}  load {loadavg()}"
              + (f"  {load.repeats} pages asked twice (a new URL each)" if load.repeats else "")
              + (f"  {load.extra['restarts']} worker restarts" if load.extra["restarts"] else "")
              + (f"  [{load.errors}]" if load.errors else ""), flush=True)
        return load


# --- Report -----------------------------------------------------------------------------------


def _num(value: float | None, digits: int) -> str:
    return "?" if value is None else f"{value:.{digits}f}"


def _share(load: Load) -> str:
    return f"{load.hits / load.responses:.0%}" if load.responses else "?"


def _median(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


@dataclass
class Summary:
    """A scenario's medians over the rounds, ours and the baseline's."""
    ours: dict
    drf: dict
    ratio: float | None
    ratios: list[float]
    errors: list[str]


def summarize(ours: list[Load], drf: list[Load]) -> Summary:
    def medians(loads: list[Load]) -> dict:
        return {name: _median([getattr(load, name) for load in loads])
                for name in ("requests_per_s", "p50_ms", "p99_ms", "queries", "db_ms",
                             "cpu_ms", "other_cpu")}

    ratios = [a.requests_per_s / b.requests_per_s for a, b in zip(ours, drf, strict=False)
              if b.requests_per_s]
    errors = [f"{side}: {load.errors}" for side, loads in (("ours", ours), ("DRF", drf))
              for load in loads if load.errors]
    return Summary(medians(ours), medians(drf) if drf else {}, _median(ratios), ratios, errors)


def print_table(scenarios: list[Scenario], summaries: dict[str, Summary]) -> None:
    header = (f"{'scenario (database path)':<30} {'ours req/s':>10} {'p50':>6} {'p99':>6} "
              f"{'q':>4} {'db ms':>5} {'CPU':>5} | {'DRF req/s':>9} {'p50':>6} {'p99':>6} "
              f"{'q':>5} {'db ms':>5} {'CPU':>5} | {'ratio':>6}")
    print()
    print(header)
    print("-" * len(header))
    for scenario in scenarios:
        s = summaries[scenario.name]
        o, d = s.ours, s.drf
        left = (f"{o['requests_per_s']:>10.1f} {o['p50_ms']:>6.1f} {o['p99_ms']:>6.1f} "
                f"{_num(o['queries'], 1):>4} {_num(o['db_ms'], 1):>5} {o['cpu_ms']:>5.1f}")
        right = (f"{d['requests_per_s']:>9.1f} {d['p50_ms']:>6.1f} {d['p99_ms']:>6.1f} "
                 f"{_num(d['queries'], 1):>5} {_num(d['db_ms'], 1):>5} {d['cpu_ms']:>5.1f}"
                 if d else f"{'-':>9} {'-':>6} {'-':>6} {'-':>5} {'-':>5} {'-':>5}")
        ratio = f"{s.ratio:5.1f}x" if s.ratio is not None else "-"
        print(f"{scenario.name[:30]:<30} {left} | {right} | {ratio:>6}")
    print("Medians over the rounds. p50, p99 in ms (wrk, corrected for stalls); q: queries and db "
          "ms: database time per response\n(Server-Timing, every response); CPU: gunicorn CPU ms "
          "per request; ratio: ours / DRF req/s, per round, median.\nBoth servers: gunicorn, 2 "
          "sync workers, DEBUG=0, cachalot off; ours with the response cache off (no cached "
          "counts).")


def verdicts(scenarios: list[Scenario], summaries: dict[str, Summary]) -> list[tuple]:
    page1 = summaries[scenarios[0].name].ours
    deep = summaries[scenarios[1].name].ours
    by_cursor = summaries[scenarios[2].name].ours
    checks = [
        ("list page 1 >= 300 req/s", page1["requests_per_s"] >= 300,
         f"{page1['requests_per_s']:.1f} req/s"),
        ("list page 1 p99 < 60 ms", page1["p99_ms"] < 60, f"{page1['p99_ms']:.1f} ms"),
    ]
    if page1["requests_per_s"]:
        share = deep["requests_per_s"] / page1["requests_per_s"]
        checks.append(("deep pages within 10% of page 1", share >= 0.9,
                       f"{share:.0%} of page 1's req/s"))
        share = by_cursor["requests_per_s"] / page1["requests_per_s"]
        checks.append(("deep pages by cursor within 10% of page 1", share >= 0.9,
                       f"{share:.0%} of page 1's req/s"))
    for scenario in scenarios:
        s = summaries[scenario.name]
        if scenario.listing:
            q = s.ours["queries"]
            checks.append((f"{scenario.name}: <= 4 queries", q is not None and q <= 4,
                           f"{_num(q, 2)} per response"))
        if s.ratio is not None:
            rounds = ", ".join(f"{r:.1f}x" for r in s.ratios)
            checks.append((f"{scenario.name}: >= {scenario.ratio:.0f}x DRF",
                           s.ratio >= scenario.ratio, f"{s.ratio:.1f}x (rounds: {rounds})"))
        if s.errors:
            checks.append((f"{scenario.name}: no errors", False, "; ".join(s.errors)))
    return checks


def main() -> None:  # noqa: C901, PLR0912, PLR0915 - one linear script
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=15, help="measured seconds per run")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up seconds per run")
    parser.add_argument("--rounds", type=int, default=2,
                        help="rounds of every scenario on ours and DRF, alternating")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--catalog", type=int, metavar="N",
                        help="make a fresh bench_api_<pid> database with N products (dropped)")
    parser.add_argument("--skip-baseline", action="store_true", help="don't run the DRF listing")
    parser.add_argument("--skip-cache-hit", action="store_true",
                        help="don't print the cache-hit figure (never a verdict anyway)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a goal fails")
    args = parser.parse_args()

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
    admin_url = os.environ.get("DATABASE_URL", "")
    made = None
    if args.catalog:
        if not admin_url.startswith("postgres"):
            raise SystemExit("--catalog needs DATABASE_URL=postgres://... (the server to use)")
        made = make_catalog(admin_url, args.catalog)
        os.environ["DATABASE_URL"] = made

    data_dir = Path(tempfile.mkdtemp(prefix="api-bench-"))
    for name in ("ours", "drf", "hit"):
        (data_dir / name).mkdir()
    servers: list[Server] = []
    failed = False
    try:
        # This process only reads, but for the kept answers of products that have none.
        os.environ.update(bench_env(data_dir, OURS_SETTINGS))
        import django

        django.setup()
        from django.conf import settings
        from django.db import connections

        scenarios, info = pick_scenarios()
        keep_answers()
        connections.close_all()
        database = settings.DATABASES["default"]
        print(f"database: {info['vendor']} {database.get('NAME')} on "
              f"{database.get('HOST') or 'a local file'}, {info['products']} published products "
              f"({info['pages']} pages of {PAGE_SIZE}), {info['categories']} categories, "
              f"{info['filter_sets']} filter-set URLs")
        if info["vendor"] != "postgresql":
            print("note: the budget is measured on PostgreSQL (set DATABASE_URL)")
        print(f"database path: ours with STOREFRONT_CACHE_TIMEOUT=0 (no response cache, no "
              f"cached counts) and CACHALOT_ENABLED=0; DRF with CACHALOT_ENABLED=0; gunicorn, 2 "
              f"sync workers, DEBUG=0; every URL asked once. wrk: {args.connections} "
              f"connections, {args.threads} threads, {args.warmup} s warm-up + {args.duration} s "
              f"per run, {args.rounds} rounds alternating; CPUs: {os.cpu_count()}")
        print(f"load average before: {loadavg()}", flush=True)

        runner = Runner(data_dir, args)
        ours = Server(database_path_env(data_dir / "ours", OURS_SETTINGS),
                      data_dir / "gunicorn-ours.log", "ours")
        servers.append(ours)
        drf = None
        if not args.skip_baseline:
            drf = Server(database_path_env(data_dir / "drf", DRF_SETTINGS),
                         data_dir / "gunicorn-drf.log", "DRF")
            servers.append(drf)
        for server in servers:
            server.wait_ready("/api/v1/products?page_size=1&_run=ready")
        results: dict[str, tuple[list[Load], list[Load]]] = {s.name: ([], []) for s in scenarios}
        spread = 2 * args.rounds * len(servers)  # runs that walk each list
        for round_no in range(1, args.rounds + 1):
            print(f"round {round_no} (load average {loadavg()})", flush=True)
            for scenario in scenarios:
                order = [ours, drf] if drf is not None else [ours]
                if round_no % 2 == 0:
                    order.reverse()
                for server in order:
                    paths = scenario.ours if server is ours else scenario.drf
                    load = runner.load(server, paths, scenario.name, spread)
                    results[scenario.name][0 if server is ours else 1].append(load)
        for server in servers:
            server.stop()
        print(f"load average after the rounds: {loadavg()}", flush=True)
        summaries = {name: summarize(*loads) for name, loads in results.items()}
        print_table(scenarios, summaries)
        print(f"\nverdicts (database path; load average {loadavg()}, {os.cpu_count()} CPUs):")
        for name, ok, value in verdicts(scenarios, summaries):
            failed = failed or not ok
            print(f"  {'PASS' if ok else 'FAIL'}  {name}: {value}")

        if not args.skip_cache_hit:
            hit_env = bench_env(data_dir / "hit", OURS_SETTINGS, cachalot=True)
            hit_env.pop("STOREFRONT_CACHE_TIMEOUT", None)  # the default: on
            hit = Server(hit_env, data_dir / "gunicorn-hit.log", "ours")
            servers.append(hit)
            hit.wait_ready("/api/v1/products?page_size=1")
            page1 = f"/api/v1/products?page_size={PAGE_SIZE}"
            # The same URL every time: a Lua list of one path, run tag left off.
            load = run_wrk(hit.url(page1), args.warmup, args.connections, args.threads,
                           _same_url_script(data_dir))
            load = run_wrk(hit.url(page1), args.duration, args.connections, args.threads,
                           _same_url_script(data_dir))
            hit.stop()
            print(f"\ncache hit (not a verdict): page 1, one URL again and again, response "
                  f"cache and cachalot on as by default: {load.requests_per_s:.1f} req/s, p50 "
                  f"{load.p50_ms:.1f} ms, p99 {load.p99_ms:.1f} ms, {_share(load)} hits, "
                  f"{_num(load.queries, 2)} queries per response (load average {loadavg()})")
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
        if made:
            from django.db import connections

            connections.close_all()
            drop_database(admin_url, made)
    if failed and args.strict:
        sys.exit(1)


def _same_url_script(data_dir: Path) -> Path:
    """The Lua statistics without the run tag: the cache-hit figure asks one URL only."""
    script = LUA.replace('path = path .. sep .. "_run=" .. tag .. "-" .. n', "")
    path = data_dir / "wrk" / "same-url.lua"
    path.write_text(script % {"paths": json.dumps(f"/api/v1/products?page_size={PAGE_SIZE}"),
                              "start": 0, "tag": '""'})
    return path


if __name__ == "__main__":
    main()
