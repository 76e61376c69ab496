"""Checkout benchmark: POST /api/v1/checkout on PostgreSQL, served as deployed, under load.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres make bench-checkout
    BENCH_ARGS="--workers 4" make bench-checkout          # (with DATABASE_URL as above)
    BENCH_ARGS="--redis-url redis://127.0.0.1:6379/15" make bench-checkout   # Redis as the cache

It needs PostgreSQL (the locks are the point). It makes a fresh database ``bench_checkout_<pid>``
on that server, migrates it and drops it at the end, whatever happens.

What it does:

1. makes the catalog with the services: a hot variant with ``--units`` units (60% in the default
   warehouse, 40% in a second one), ``--skus`` variants (4 per product) with ample stock (every
   third one in both warehouses), a warm-up variant; activates the ``flat_rate_shipping``
   plugin; and makes the guest carts with ``backoffice.checkout.cart.add_to_cart``: ``--buyers``
   carts of 1 hot unit, ``--carts`` carts of 1 to 3 random SKUs (1 unit each), warm-up carts;
2. checks out a few warm-up carts in-process (Django's test client, cachalot as configured):
   the queries of one checkout (CaptureQueriesContext; ``--show-queries`` prints them), and the
   median request time, SQL time and time the stock rows stay locked (from the ``SELECT ... FOR
   UPDATE`` to the end of the commit); ``--profile`` prints a cProfile of one;
3. for each scenario, serves the app with gunicorn as deployed (``deploy/gunicorn.conf.py``,
   ``--workers`` sync workers, 2 by default; DEBUG unset, a random SECRET_KEY, LOG_LEVEL=WARNING,
   ALLOWED_HOSTS=127.0.0.1, cachalot on as by default) on a free loopback port, with an empty
   cache: a file cache in a temporary directory, or with ``--redis-url`` (default $REDIS_URL)
   an empty Redis database, as production has (emptied at the end); warms every worker with a
   few checkouts of the warm-up variant, then:

   - **hot SKU race**: ``--buyers`` threads, each with its own connection, cart token and
     ``Idempotency-Key``, released together by a barrier: all check out at once;
   - **spread checkouts**: ``--clients`` threads take the ``--carts`` cart tokens from a queue,
     one request per cart, back to back;

   and prints orders/s, requests/s, latency (p50, p90, p99, max, measured by the client from
   sending the request to the last byte of the answer), what the server reports per request in
   its ``Server-Timing`` header (queries, database ms, total ms), and the CPU used per request by
   gunicorn, PostgreSQL, this client and anything else (a warning when other work took more
   than 10% of the machine: the numbers are then low);
4. verifies the invariants from the database after each scenario, and that PostgreSQL counted no
   deadlock in the benchmark's database (read after the server stopped, so its backends have
   flushed their statistics). Any failure makes the exit status non-zero.

The client is Python (threads, one ``http.client`` connection each), not wrk: every request
must carry its own cart token and key, be sent exactly once, and have its status and error code
checked, which wrk only does with a Lua script and a run length in seconds, not requests. A
checkout costs tens of milliseconds of server CPU; the client's own CPU per request (about 1 ms)
is printed so its share of the machine (it runs on the same cores as gunicorn and PostgreSQL) is
visible. Sync workers close the connection after each response, so every request opens a new
loopback connection, as behind the production proxy.

It prints numbers; it is not a test (tests/test_checkout_concurrency.py is).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import queue
import random
import re
import resource
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Serving, ports and CPU accounting as the API benchmark does them.
from benchmarks.api_bench import Server as _ApiServer  # noqa: E402 - needs ROOT on the path
from benchmarks.api_bench import (  # noqa: E402
    bench_env,
    free_port,
    loadavg,
    machine_cpu,
    process_tree_cpu,
)

SETTINGS = "backoffice.settings"
CHECKOUT = "/api/v1/checkout"
READY_PATH = "/api/v1/products?page_size=1"
ADDRESS = {"first_name": "A", "line1": "Moi Ave 1", "city": "Nairobi", "country": "KE"}
BODY = {"shipping_method": "flat_rate", "shipping_address": ADDRESS,
        "email": "buyer@example.com"}
BODY_BYTES = json.dumps(BODY).encode()
HOT_SKU = "HOT-1"
WARM_SKU = "WARM-1"
VARIANTS_PER_PRODUCT = 4
IN_PROCESS = 13  # checkouts in-process: 1 warm-up, 1 counted, 10 timed, 1 profiled


# --- Database and environment ---------------------------------------------------------------


def create_database(base_url: str) -> tuple[str, str]:
    import psycopg

    name = f"bench_checkout_{os.getpid()}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, urlunparse(urlparse(base_url)._replace(path=f"/{name}"))


def drop_database(base_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def server_env(data_dir: Path, database_url: str, workers: int, redis_url: str | None,
               port: int | None = None) -> dict[str, str]:
    env = bench_env(data_dir, SETTINGS, port)  # random SECRET_KEY, LOG_LEVEL=WARNING, ...
    env.pop("DEBUG", None)  # unset, as in production (the default is off)
    env.pop("REDIS_URL", None)
    env.update({"DATABASE_URL": database_url, "WEB_CONCURRENCY": str(workers)})
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


def claim_redis(url: str) -> None:
    """Cachalot's keys name the database alias, not the database: a Redis database shared with
    another instance would mix their cached queries. Only an empty one will do."""
    import redis

    keys = redis.Redis.from_url(url).dbsize()
    if keys:
        raise SystemExit(f"{url} holds {keys} keys: give the benchmark a Redis database of its "
                         "own (e.g. redis://127.0.0.1:6379/15); it is emptied at the end.")


def release_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


def deadlocks(database: str) -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT deadlocks FROM pg_stat_database WHERE datname = %s", [database])
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def postgres_processes() -> dict[int, float]:
    """CPU seconds of every process named ``postgres`` on this machine, by pid."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            head, tail = (entry / "stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        if head.split("(", 1)[-1] == "postgres":
            fields = tail.split()
            out[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return out


class PostgresCpu:
    """CPU used by PostgreSQL (server and backends) from ``start`` to ``stop``: sampled every
    half second by pid, so backends that come and go in between (a worker reconnects after
    DB_CONN_MAX_AGE) are counted, all but their last half second."""

    def start(self) -> None:
        self.first = postgres_processes()
        self.last = dict(self.first)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.done.wait(0.5):
            self.last.update(postgres_processes())

    def stop(self) -> float:
        self.done.set()
        self.thread.join()
        self.last.update(postgres_processes())
        return sum(cpu - self.first.get(pid, 0.0) for pid, cpu in self.last.items())


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- Catalog, stock and carts ---------------------------------------------------------------


@dataclass
class Fixture:
    hot_variant_id: int = 0
    hot_tokens: list[str] = field(default_factory=list)
    warm_tokens: list[str] = field(default_factory=list)
    spread_tokens: list[str] = field(default_factory=list)
    spread_ordered: dict[int, int] = field(default_factory=dict)  # variant id: units in carts
    spread_stock: dict[int, int] = field(default_factory=dict)  # variant id: units on hand
    spread_lines: int = 0


def _carts(lines_per_cart: list[list[tuple[int, int]]], chunk: int = 250) -> list[str]:
    """A guest cart per entry (``[(variant_id, quantity), ...]``); their tokens. Committed in
    chunks: a transaction per cart would wait for a disk flush each."""
    from django.db import transaction

    from backoffice.checkout import cart as carts
    from backoffice.checkout.models import Cart

    tokens = []
    for start in range(0, len(lines_per_cart), chunk):
        with transaction.atomic():
            for lines in lines_per_cart[start:start + chunk]:
                cart = Cart.objects.create()
                for variant_id, quantity in lines:
                    carts.add_to_cart(cart=cart, variant_id=variant_id, quantity=quantity)
                tokens.append(str(cart.token))
    return tokens


def make_fixture(args: argparse.Namespace) -> Fixture:
    from django.db import transaction

    from backoffice.catalog.models import Product, Variant
    from backoffice.inventory.models import Warehouse
    from backoffice.inventory.services import adjust_stock
    from backoffice.plugin_host.services import activate_plugins

    rng = random.Random(args.seed)  # noqa: S311 - test data, not secrets
    fixture = Fixture()
    activate_plugins(["flat_rate_shipping"])
    Warehouse.objects.get_or_create(code="main", defaults={"name": "Main", "is_default": True})
    second, _ = Warehouse.objects.get_or_create(code="mombasa", defaults={"name": "Mombasa"})

    hot = Variant.objects.create(
        product=Product.objects.create(name="Limited sneaker", slug="limited-sneaker"),
        sku=HOT_SKU, name="", price="100.00", weight_grams=900,
    )
    fixture.hot_variant_id = hot.pk
    in_default = round(args.units * 0.6)
    adjust_stock(variant_id=hot.pk, quantity_change=in_default)
    if args.units - in_default:
        adjust_stock(variant_id=hot.pk, quantity_change=args.units - in_default,
                     warehouse_id=second.pk)
    warm = Variant.objects.create(
        product=Product.objects.create(name="Warm-up mug", slug="warm-up-mug"),
        sku=WARM_SKU, name="", price="10.00", weight_grams=300,
    )
    adjust_stock(variant_id=warm.pk, quantity_change=10_000)

    # The spread catalog: products of 4 variants; every third variant also has stock in the
    # second warehouse. Ample: each variant holds more than every cart could ask of it.
    ample = max(1000, args.carts * 3)
    with transaction.atomic():
        products = Product.objects.bulk_create([
            Product(name=f"Product {p}", slug=f"product-{p}", brand=f"Brand {p % 20}")
            for p in range((args.skus + VARIANTS_PER_PRODUCT - 1) // VARIANTS_PER_PRODUCT)
        ])
        variants = Variant.objects.bulk_create([
            Variant(product=products[i // VARIANTS_PER_PRODUCT], sku=f"SKU-{i:05d}",
                    name=f"Size {i % VARIANTS_PER_PRODUCT}", position=i % VARIANTS_PER_PRODUCT,
                    price=f"{rng.randint(5, 200)}.{rng.choice(['00', '50', '99'])}",
                    weight_grams=rng.randint(100, 2000))
            for i in range(args.skus)
        ])
        for i, variant in enumerate(variants):
            adjust_stock(variant_id=variant.pk, quantity_change=ample)
            fixture.spread_stock[variant.pk] = ample
            if i % 3 == 0:
                adjust_stock(variant_id=variant.pk, quantity_change=100, warehouse_id=second.pk)
                fixture.spread_stock[variant.pk] += 100

    spread = []
    ids = [v.pk for v in variants]
    for _ in range(args.carts):
        chosen = rng.sample(ids, k=rng.randint(1, min(3, len(ids))))
        spread.append([(variant_id, 1) for variant_id in chosen])
        for variant_id in chosen:
            fixture.spread_ordered[variant_id] = fixture.spread_ordered.get(variant_id, 0) + 1
    fixture.spread_lines = sum(len(lines) for lines in spread)
    fixture.hot_tokens = _carts([[(hot.pk, 1)]] * args.buyers)
    fixture.spread_tokens = _carts(spread)
    # Warm-up carts: a few per worker for each server start, and some checked out in-process.
    fixture.warm_tokens = _carts([[(warm.pk, 1)]] * (4 * args.workers * 2 + IN_PROCESS))
    return fixture


# --- Queries of one checkout, in-process ----------------------------------------------------


class _Clock:
    """An execute wrapper: counts the queries that reach the database, adds up their time, and
    measures how long the stock rows stay locked (from the start of the ``SELECT ... FOR
    UPDATE`` on ``inventory_stock`` to the end of the commit)."""

    def __init__(self) -> None:
        self.queries = 0
        self.sql = 0.0
        self.locked_at: float | None = None
        self.held: float | None = None

    def __call__(self, execute, sql, params, many, context):
        from django.db import transaction

        started = time.perf_counter()
        if (self.locked_at is None and " FOR UPDATE" in sql
                and 'FROM "inventory_stock"' in sql):
            self.locked_at = started
            transaction.on_commit(self._released)
        try:
            return execute(sql, params, many, context)
        finally:
            self.queries += 1
            self.sql += time.perf_counter() - started

    def _released(self) -> None:
        self.held = time.perf_counter() - self.locked_at


@dataclass
class InProcess:
    queries: int = 0  # CaptureQueriesContext, one checkout
    sql_ms: float = 0.0  # medians over the measured checkouts from here on
    request_ms: float = 0.0
    locked_ms: float = 0.0
    checkouts: int = 0


def in_process(tokens: list[str], show: bool, profile: bool) -> InProcess:
    """Checks out ``tokens`` in this process (Django's test client, cachalot as configured):
    the first warms up, the second is counted with CaptureQueriesContext (and its SQL printed
    with ``show``), the others are timed; with ``profile`` the last runs under cProfile."""
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")

    def post(token: str):
        response = client.post(CHECKOUT, BODY_BYTES, content_type="application/json",
                               HTTP_X_CART_TOKEN=token, HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()))
        if response.status_code != 201:
            raise SystemExit(f"in-process checkout answered {response.status_code}: "
                             f"{response.content[:300]!r}")
        return response

    post(tokens[0])  # URLconf, schema, plugin host, cachalot: the cold start
    with CaptureQueriesContext(connection) as ctx:
        post(tokens[1])
    captured = list(ctx.captured_queries)  # the next request resets connection.queries
    out = InProcess(queries=len(captured))
    if show:
        print(f"queries of one checkout ({len(captured)}; BEGIN and COMMIT included):")
        for number, query in enumerate(captured, 1):
            sql = " ".join(query["sql"].split())
            print(f"  {number:>3} {sql[:160]}")
    timed = tokens[2:-1] if profile else tokens[2:]
    sql, total, held = [], [], []
    for token in timed:
        clock = _Clock()
        started = time.perf_counter()
        with connection.execute_wrapper(clock):
            post(token)
        total.append((time.perf_counter() - started) * 1000)
        sql.append(clock.sql * 1000)
        held.append((clock.held or 0) * 1000)
    out.checkouts = len(timed)
    out.sql_ms, out.request_ms, out.locked_ms = median(sql), median(total), median(held)
    if profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.enable()
        post(tokens[-1])
        profiler.disable()
        print("cProfile of one checkout in-process (cProfile slows it down), by own time:")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        print("... and by cumulative time:")
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
    return out


# --- Serving and loading --------------------------------------------------------------------


class Server(_ApiServer):
    """api_bench's gunicorn, with the number of workers chosen."""

    def __init__(self, env: dict[str, str], workers: int, log_path: Path) -> None:
        import subprocess

        self.port = free_port()
        env = {**env, "PORT": str(self.port)}
        self.log = log_path.open("w")
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py",
             "--workers", str(workers), "--bind", f"127.0.0.1:{self.port}", "backoffice.wsgi"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@dataclass
class Result:
    status: int  # 0: no HTTP answer
    code: str  # the error code of a refusal, or the exception of a failed request
    seconds: float
    queries: int | None = None
    db_ms: float | None = None
    server_ms: float | None = None


TIMING = re.compile(r'db;dur=([\d.]+);desc="(\d+) queries", total;dur=([\d.]+)')


def checkout(conn: http.client.HTTPConnection, token: str) -> Result:
    headers = {"Content-Type": "application/json", "X-Cart-Token": token,
               "Idempotency-Key": str(uuid.uuid4())}
    started = time.perf_counter()
    try:
        conn.request("POST", CHECKOUT, body=BODY_BYTES, headers=headers)
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        return Result(0, f"{type(exc).__name__}: {exc}", time.perf_counter() - started)
    seconds = time.perf_counter() - started
    code = ""
    if response.status >= 300:
        try:
            code = json.loads(body).get("code", "")
        except ValueError:
            code = body[:80].decode(errors="replace")
    result = Result(response.status, code, seconds)
    timing = TIMING.search(response.getheader("Server-Timing") or "")
    if timing:
        result.db_ms, result.queries, result.server_ms = (
            float(timing[1]), int(timing[2]), float(timing[3]))
    return result


@dataclass
class Run:
    results: list[Result]
    wall: float
    server_cpu: float  # seconds, gunicorn master and workers
    postgres_cpu: float
    client_cpu: float
    machine_busy: float  # share of all CPUs
    other_cpu: float  # seconds the machine was busy with neither of the three (or the kernel)


class Meter:
    """CPU of gunicorn, PostgreSQL, this process and the machine, between start and stop."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def start(self) -> None:
        self.postgres = PostgresCpu()
        self.postgres.start()
        self.values = (process_tree_cpu(self.server.process.pid), own_cpu(), machine_cpu(),
                       time.perf_counter())

    def stop(self, results: list[Result]) -> Run:
        wall = time.perf_counter()
        server, client, (busy, total), started = self.values
        busy_after, total_after = machine_cpu()
        run = Run(
            results=results, wall=wall - started,
            server_cpu=process_tree_cpu(self.server.process.pid) - server,
            postgres_cpu=self.postgres.stop(), client_cpu=own_cpu() - client,
            machine_busy=(busy_after - busy) / (total_after - total) if total_after > total
            else 0.0, other_cpu=0.0,
        )
        run.other_cpu = max(0.0, (busy_after - busy) / os.sysconf("SC_CLK_TCK")
                            - run.server_cpu - run.postgres_cpu - run.client_cpu)
        return run


def race(server: Server, tokens: list[str]) -> Run:
    """Every token at once: a thread and a connection each, released by one barrier."""
    barrier = threading.Barrier(len(tokens) + 1)
    results: list[Result | None] = [None] * len(tokens)

    def buyer(index: int, token: str) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        with contextlib.suppress(OSError):  # request() connects again, and reports it
            conn.connect()  # the TCP handshake is not part of the latency
        barrier.wait()
        results[index] = checkout(conn, token)
        conn.close()

    threads = [threading.Thread(target=buyer, args=(i, t)) for i, t in enumerate(tokens)]
    for thread in threads:
        thread.start()
    meter = Meter(server)
    meter.start()
    barrier.wait()
    for thread in threads:
        thread.join()
    return meter.stop([r for r in results if r is not None])


def spread(server: Server, tokens: list[str], clients: int) -> Run:
    """``clients`` threads take tokens from a queue until it is empty: one request per token."""
    todo: queue.SimpleQueue[str] = queue.SimpleQueue()
    for token in tokens:
        todo.put(token)
    results: list[Result] = []
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        mine = []
        while True:
            try:
                token = todo.get_nowait()
            except queue.Empty:
                break
            mine.append(checkout(conn, token))
        conn.close()
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    meter = Meter(server)
    meter.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return meter.stop(results)


def warm_up(server: Server, tokens: list[str], workers: int) -> None:
    """A few checkouts per worker, so the measured requests find warm processes (imports,
    database connection, plugin host, cachalot)."""
    run = spread(server, tokens, clients=workers * 2)
    statuses = Counter(r.status for r in run.results)
    if statuses != {201: len(tokens)}:
        codes = Counter((r.status, r.code) for r in run.results)
        raise SystemExit(f"warm-up checkouts failed: {dict(codes)}")


# --- Invariants and report ------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    """Nearest rank: the smallest value with at least ``share`` of the values at or below it."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * share // 1))  # ceil
    return ordered[int(rank) - 1]


def median(values: list[float]) -> float:
    return percentile(values, 0.5)


@dataclass
class Check:
    name: str
    ok: bool
    value: str


def common_checks(run: Run, deadlock_count: int, log_text: str) -> list[Check]:
    errors = sum(1 for r in run.results if r.status >= 500)
    failed = [r.code for r in run.results if r.status == 0]
    return [
        Check("zero 5xx", errors == 0, str(errors)),
        Check("every request answered", not failed, f"{len(failed)} failed"
              + (f" (first: {failed[0]})" if failed else "")),
        Check("zero deadlocks (pg_stat_database)", deadlock_count == 0, str(deadlock_count)),
        Check("no traceback or deadlock in the server log",
              "Traceback" not in log_text and "deadlock" not in log_text.lower(),
              "clean" if "Traceback" not in log_text else "see the log"),
    ]


def hot_checks(run: Run, fixture: Fixture, units: int) -> list[Check]:
    from django.db.models import Sum

    from backoffice.inventory.models import MovementReason, Stock, StockMovement
    from backoffice.orders.models import Allocation, Order

    buyers = len(fixture.hot_tokens)
    sold = min(units, buyers)
    statuses = Counter(r.status for r in run.results)
    refusals = Counter(r.code for r in run.results if r.status == 409)
    orders = Order.objects.filter(lines__variant_id=fixture.hot_variant_id).distinct().count()
    stock = Stock.objects.filter(variant_id=fixture.hot_variant_id).aggregate(
        on_hand=Sum("quantity"), allocated=Sum("quantity_allocated"))
    allocations = Allocation.objects.filter(
        stock__variant_id=fixture.hot_variant_id).aggregate(n=Sum("quantity"))["n"] or 0
    movements = StockMovement.objects.filter(
        stock__variant_id=fixture.hot_variant_id, reason=MovementReason.ALLOCATION
    ).aggregate(n=Sum("allocated_change"))["n"] or 0
    available = stock["on_hand"] - stock["allocated"]
    return [
        Check(f"{sold} orders (HTTP 201)", statuses[201] == sold, str(statuses[201])),
        Check(f"{buyers - sold} refusals insufficient_stock (HTTP 409)",
              statuses[409] == buyers - sold and set(refusals) <= {"insufficient_stock"},
              f"{statuses[409]} {dict(refusals) or ''}".strip()),
        Check("no other status", set(statuses) <= {201, 409},
              str({s: n for s, n in statuses.items() if s not in (201, 409)} or "none")),
        Check(f"{sold} orders in the database", orders == sold, str(orders)),
        Check(f"stock available {units - sold}", available == units - sold, str(available)),
        Check(f"stock allocated {sold}", stock["allocated"] == sold, str(stock["allocated"])),
        Check(f"stock on hand still {units}", stock["on_hand"] == units, str(stock["on_hand"])),
        Check(f"allocations and ledger add up to {sold}", allocations == movements == sold,
              f"{allocations} / {movements}"),
    ]


def spread_checks(run: Run, fixture: Fixture) -> list[Check]:
    from django.db.models import Sum

    from backoffice.inventory.models import Stock
    from backoffice.orders.models import Allocation, Order, OrderLine

    carts = len(fixture.spread_tokens)
    statuses = Counter(r.status for r in run.results)
    ids = list(fixture.spread_ordered)
    allocated = dict(Stock.objects.filter(variant_id__in=list(fixture.spread_stock)).values(
        "variant_id").annotate(n=Sum("quantity_allocated")).values_list("variant_id", "n"))
    on_hand = dict(Stock.objects.filter(variant_id__in=list(fixture.spread_stock)).values(
        "variant_id").annotate(n=Sum("quantity")).values_list("variant_id", "n"))
    ordered = dict(OrderLine.objects.filter(variant_id__in=ids).values("variant_id").annotate(
        n=Sum("quantity")).values_list("variant_id", "n"))
    allocations = dict(Allocation.objects.filter(stock__variant_id__in=ids).values(
        "stock__variant_id").annotate(n=Sum("quantity")).values_list("stock__variant_id", "n"))
    wrong = [v for v in fixture.spread_stock
             if (allocated.get(v, 0), ordered.get(v, 0), allocations.get(v, 0))
             != (fixture.spread_ordered.get(v, 0),) * 3]
    moved = [v for v, units in fixture.spread_stock.items() if on_hand.get(v) != units]
    orders = Order.objects.filter(lines__variant_id__in=ids).distinct().count()
    total = sum(fixture.spread_ordered.values())
    return [
        Check(f"all {carts} checkouts 201", statuses == {201: carts},
              str(dict(statuses))),
        Check(f"{carts} orders in the database", orders == carts, str(orders)),
        Check(f"stock allocated = ordered = in carts ({total} units, {len(ids)} SKUs)",
              not wrong, f"{len(wrong)} SKUs differ" if wrong else "every SKU"),
        Check("stock on hand unchanged", not moved, f"{len(moved)} SKUs differ" if moved
              else "every SKU"),
    ]


def summary(label: str, run: Run, checks: list[Check]) -> dict:
    ok = [r for r in run.results if r.status in (200, 201)]
    created = sum(1 for r in run.results if r.status == 201)
    latencies = [r.seconds * 1000 for r in run.results]
    n = len(run.results) or 1
    return {
        "label": label, "requests": len(run.results), "orders": created, "wall": run.wall,
        "orders_s": created / run.wall, "requests_s": len(run.results) / run.wall,
        "p50": percentile(latencies, 0.5), "p90": percentile(latencies, 0.9),
        "p99": percentile(latencies, 0.99), "max": max(latencies, default=float("nan")),
        "q_201": median([r.queries for r in ok if r.queries is not None]),
        "q_409": median([r.queries for r in run.results
                         if r.status == 409 and r.queries is not None]),
        "server_201": median([r.server_ms for r in ok if r.server_ms is not None]),
        "db_201": median([r.db_ms for r in ok if r.db_ms is not None]),
        "server_409": median([r.server_ms for r in run.results
                              if r.status == 409 and r.server_ms is not None]),
        "gunicorn_cpu": run.server_cpu * 1000 / n, "postgres_cpu": run.postgres_cpu * 1000 / n,
        "client_cpu": run.client_cpu * 1000 / n, "busy": run.machine_busy,
        "other_cpu": run.other_cpu * 1000 / n,
        "other_share": run.other_cpu / (run.wall * (os.cpu_count() or 1)),
        "statuses": dict(sorted(Counter(r.status for r in run.results).items())),
        "checks": checks,
    }


def _f(value: float, digits: int = 1) -> str:
    return "-" if value != value else f"{value:.{digits}f}"  # NaN: nothing measured


def print_report(rows: list[dict]) -> None:
    header = (f"{'scenario':<26} {'requests':>8} {'orders':>6} {'seconds':>7} {'orders/s':>8} "
              f"{'req/s':>6} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'max ms':>7}")
    print()
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['label']:<26} {row['requests']:>8} {row['orders']:>6} {row['wall']:>7.2f} "
              f"{row['orders_s']:>8.1f} {row['requests_s']:>6.1f} {row['p50']:>7.1f} "
              f"{row['p90']:>7.1f} {row['p99']:>7.1f} {row['max']:>7.1f}")
    print()
    header = (f"{'per request (median)':<26} {'queries 201':>11} {'queries 409':>11} "
              f"{'server ms 201':>13} {'db ms 201':>9} {'server ms 409':>13} | "
              f"{'CPU ms: gunicorn':>16} {'postgres':>8} {'client':>6} {'other':>5} "
              f"{'machine':>7}")
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['label']:<26} {_f(row['q_201'], 0):>11} {_f(row['q_409'], 0):>11} "
              f"{_f(row['server_201']):>13} {_f(row['db_201']):>9} {_f(row['server_409']):>13} | "
              f"{row['gunicorn_cpu']:>16.1f} {row['postgres_cpu']:>8.1f} "
              f"{row['client_cpu']:>6.1f} {row['other_cpu']:>5.1f} {row['busy']:>7.0%}")
    print("latency: client-measured, request sent to last byte received (queueing for a worker "
          "included);\nserver ms / db ms / queries: the app's Server-Timing header; CPU: per "
          "request, averaged over the run (other: the\nrest of the machine's busy time: kernel, "
          "other processes); machine: share of all CPUs busy during the run.")
    for row in rows:
        if row["other_share"] > 0.1:
            print(f"WARNING: {row['label']}: other work took {row['other_share']:.0%} of the "
                  "machine's CPUs during the run; its numbers are low, run it again on a quiet "
                  "machine.")
    for row in rows:
        print(f"\n{row['label']}: statuses {row['statuses']}")
        for check in row["checks"]:
            print(f"  {'ok  ' if check.ok else 'FAIL'}  {check.name}: {check.value}")


# --- Main -----------------------------------------------------------------------------------


def run_scenario(label: str, tokens: list[str], fixture: Fixture, env: dict[str, str],
                 data_dir: Path, args: argparse.Namespace, database: str, load) -> tuple:
    from django.core.cache import cache
    from django.db import connections

    log_path = data_dir / f"gunicorn-{label.split()[0]}.log"
    deadlocks_before = deadlocks(database)
    cache.clear()  # each scenario starts with an empty cache (a file cache slows as it fills)
    server = Server(env, args.workers, log_path)
    try:
        server.wait_ready(READY_PATH)
        per_start = 4 * args.workers
        warm, fixture.warm_tokens = (fixture.warm_tokens[:per_start],
                                     fixture.warm_tokens[per_start:])
        warm_up(server, warm, args.workers)
        print(f"{label}: gunicorn on 127.0.0.1:{server.port} ({args.workers} sync workers), "
              f"warmed with {len(warm)} checkouts; {len(tokens)} checkouts...", flush=True)
        run = load(server, tokens)
    finally:
        server.stop()
    connections.close_all()
    time.sleep(0.5)  # the workers' backends exit and flush their statistics
    deadlock_count = deadlocks(database) - deadlocks_before
    log_text = log_path.read_text(errors="replace")
    return run, deadlock_count, log_text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--buyers", type=int, default=200, help="hot race: carts racing")
    parser.add_argument("--units", type=int, default=50, help="hot race: units of the hot SKU")
    parser.add_argument("--carts", type=int, default=2000, help="spread: carts checked out")
    parser.add_argument("--skus", type=int, default=1000, help="spread: SKUs in the catalog")
    parser.add_argument("--clients", type=int, default=16, help="spread: concurrent clients")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL") or None,
                        help="serve with this Redis as the cache, as in production (an empty "
                        "Redis database, emptied at the end; default $REDIS_URL); without it a "
                        "fresh file cache")
    parser.add_argument("--only", choices=["hot", "spread"], help="run one scenario")
    parser.add_argument("--show-queries", action="store_true",
                        help="print the SQL of the checkout counted in-process")
    parser.add_argument("--profile", action="store_true",
                        help="print a cProfile of one in-process checkout")
    parser.add_argument("--keep-log", action="store_true",
                        help="keep the gunicorn logs (their directory is printed)")
    args = parser.parse_args()

    base_url = os.environ.get("DATABASE_URL", "")
    if not base_url.startswith(("postgres://", "postgresql://")):
        print("The checkout benchmark needs PostgreSQL: DATABASE_URL=postgres://user@host:5432/"
              "postgres (a fresh database is made there and dropped at the end).",
              file=sys.stderr)
        sys.exit(2)
    if args.redis_url:
        claim_redis(args.redis_url)
    data_dir = Path(tempfile.mkdtemp(prefix="checkout-bench-"))
    database, database_url = create_database(base_url)
    failed = True
    try:
        env = server_env(data_dir, database_url, args.workers, args.redis_url)
        os.environ.update({k: v for k, v in env.items() if k != "PORT"})
        for name in ("DEBUG", "REDIS_URL"):
            if name not in env:
                os.environ.pop(name, None)
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connection

        started = time.perf_counter()
        call_command("migrate", verbosity=0)
        migrated = time.perf_counter() - started
        from cachalot.api import cachalot_disabled

        with cachalot_disabled():  # the setup's queries would only fill the cache
            fixture = make_fixture(args)
        print(f"database: PostgreSQL {connection.pg_version // 10000} {database} on "
              f"{settings.DATABASES['default'].get('HOST')}, migrated in {migrated:.1f} s; "
              f"catalog and {len(fixture.hot_tokens) + len(fixture.spread_tokens)} carts made in "
              f"{time.perf_counter() - started - migrated:.1f} s")
        cache = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
        print(f"hot race: {args.buyers} buyers, 1 unit each, for {args.units} units of {HOT_SKU} "
              f"(2 warehouses); spread: {args.carts} carts of 1-3 of {args.skus} SKUs "
              f"({fixture.spread_lines} lines), {args.clients} clients")
        print(f"server: gunicorn {args.workers} sync workers, DEBUG unset, LOG_LEVEL=WARNING, "
              f"cachalot {'on' if settings.CACHALOT_ENABLED else 'off'}, cache {cache}; "
              f"CPUs: {os.cpu_count()} (shared by gunicorn, PostgreSQL and this client); "
              f"load average: {loadavg()}", flush=True)

        local = in_process(fixture.warm_tokens[:IN_PROCESS], args.show_queries, args.profile)
        fixture.warm_tokens = fixture.warm_tokens[IN_PROCESS:]
        print(f"one checkout in-process, no contention (1-line cart, warm, cachalot as "
              f"configured): {local.queries} queries (CaptureQueriesContext); median of "
              f"{local.checkouts}: request {local.request_ms:.1f} ms, SQL {local.sql_ms:.1f} ms, "
              f"stock rows locked {local.locked_ms:.1f} ms (FOR UPDATE to COMMIT)", flush=True)
        connection.close()

        rows = []
        if args.only in (None, "hot"):
            run, dead, log_text = run_scenario(
                "hot SKU race", fixture.hot_tokens, fixture, env, data_dir, args, database,
                race)
            checks = hot_checks(run, fixture, args.units) + common_checks(run, dead, log_text)
            rows.append(summary(f"hot SKU race ({args.buyers}/{args.units})", run, checks))
        if args.only in (None, "spread"):
            run, dead, log_text = run_scenario(
                "spread checkouts", fixture.spread_tokens, fixture, env, data_dir, args,
                database, lambda server, tokens: spread(server, tokens, args.clients))
            checks = spread_checks(run, fixture) + common_checks(run, dead, log_text)
            rows.append(summary(f"spread ({args.clients} clients)", run, checks))
        print_report(rows)
        print(f"\nload average after: {loadavg()}")
        failed = any(not check.ok for row in rows for check in row["checks"])
        print("invariants: " + ("SOME FAILED" if failed else "all hold"))
    finally:
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: S110 - Django may not be set up; drop the database anyway
            pass
        drop_database(base_url, database)
        if args.redis_url:
            release_redis(args.redis_url)
        if args.keep_log:
            print(f"gunicorn logs kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
