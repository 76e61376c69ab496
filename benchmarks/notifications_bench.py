"""Notifications benchmark: order confirmations delivered by SMTP, and checkout with them on/off.

    make bench-notifications                                   # both parts, defaults (~10 min)
    BENCH_ARGS="--events 2000 --carts 300" make bench-notifications      # smaller
    BENCH_ARGS="--events 500 --sqlite" make bench-notifications          # SQLite, quick
    BENCH_ARGS="--only delivery" make bench-notifications                # one part

PostgreSQL by default: each part makes a fresh database ``bench_notif_<part>_<pid>`` on the
server of ``--database-url`` (default $DATABASE_URL, else postgres://postgres@127.0.0.1:5432/
postgres), migrates it and drops it at the end, whatever happens; ``--sqlite`` uses a file in a
temporary folder instead. The job broker and the cache are Redis database 14 (``--redis-url``,
default redis://127.0.0.1:6379/14) when it answers, else the ORM broker and a file cache (as the
settings do without REDIS_URL); the one used is printed. The Redis database must be empty (the
benchmark refuses otherwise) and is emptied at the end. Each part runs in its own process of
this script (Django is set up once per process, against that part's database).

**Part 1, delivery** (``--events``, 10,000 by default):

1. migrates, switches on the ``email``, ``manual_payment`` and ``flat_rate_shipping`` plugins
   (``activate_plugins``); by default makes no superuser, so only customers are mailed (one
   message per event: 10,000 messages fit the 10 minutes); ``--staff 1`` makes one with an
   email, and every order then also alerts it (``staff_new_order`` goes to the superusers when
   no alert is set up): twice the messages. Makes a catalog of 60 variants in stock and the
   orders with ``bulk_create``: guest orders paid on delivery (manual payment: no payment window,
   so the "cancel unpaid orders" schedule leaves them alone), 1 to 3 lines each, a unique number
   (``ORDER_NUMBER_START + id``, as checkout numbers them) and a unique email each; then
   ``VACUUM ANALYZE`` (``ANALYZE`` on SQLite);
2. starts a local SMTP server (aiosmtpd, in its own process so its CPU is its own; it counts the
   messages, their recipients and the notification id in each Message-ID) and the job cluster as
   deployed: ``manage.py qcluster`` with ``Q_WORKERS=2``, the settings module
   ``backoffice.settings`` with DEBUG unset, a random SECRET_KEY, DATABASE_URL and REDIS_URL as
   above, ``EMAIL_BACKEND`` Django's SMTP backend to that server, LOG_LEVEL INFO (the
   production default: its log is where the jobs run are counted); the schedules are the
   migrated ones, as in production (``retry_due`` runs every minute). It checks that django-q2
   is not in sync mode, in this process and in the settings the cluster reads;
3. warms the cluster with a few events of extra orders (own addresses, left out of the counts)
   and waits for their mail;
4. **deciding**: calls ``notifications.services.order_placed(order)`` for each order, each in its
   own ``transaction.atomic()`` as checkout does (checkout calls it inside its own): the rows are
   written in the transaction and one job per event is enqueued after commit, from this
   process, on the broker (counted with django-q2's ``pre_enqueue`` signal). Prints events/s,
   rows/s and the SQL statements per event (inside the transaction, and after the commit: the
   ORM broker's INSERT). The cluster is running and sends while this runs (as in production:
   jobs start as soon as they are enqueued), on the same 2 CPUs, so this rate is the one with
   sending beside it;
5. **sending**: from the first enqueue until the SMTP server has received every message and
   every row is ``sent``: messages/s, p50/p90/max of (``sent_at`` - ``created_at``) of the rows,
   the largest broker backlog seen, the jobs the cluster ran by function (from its log: a
   ``send`` job is one ``retry_due`` enqueued for a row whose ``send_event`` job was still
   waiting), and the CPU seconds (and ms per message) of the cluster's workers, its other
   processes (monitor: saves each job's result; pusher; sentinel: also the scheduler), the SMTP
   server, PostgreSQL (the backends of this database and the server's own processes), Redis
   (the whole server) and this process (deciding and polling). Every process on the machine is
   sampled every half second, so the work outside the benchmark (other processes, other
   databases' backends) is printed too, with a warning above 10% of the machine: the machine
   may be shared, and its numbers are then low;
6. verifies: every order got exactly one confirmation (counted by recipient at the SMTP server),
   the superuser one alert per order, no notification id received twice, as many messages as
   rows, every row ``sent`` (none queued, sending or failed), one enqueue per event, no error in
   the cluster's log. Any failure makes the exit status non-zero.

**Part 2, checkout with notifications on and off** (``--carts`` per run, ``--runs`` runs):
``benchmarks/checkout_bench.py``'s machinery, imported: its catalog and guest carts
(``make_fixture``: ``--skus`` SKUs, carts of 1 to 3 of them), its gunicorn server as deployed
(``--workers`` sync workers, DEBUG unset, LOG_LEVEL=WARNING, cachalot on, an empty cache
before each run: Redis db 14 or a fresh file cache), its warm-up and its spread scenario
(``--clients`` threads posting ``/api/v1/checkout`` back to back, one request per cart), its
latency, Server-Timing and CPU accounting and its report (on SQLite its "postgres" column is
whatever else PostgreSQL did on the machine). The fixture is followed by ``VACUUM ANALYZE``, so
the first run (an *on*) does not meet a pending autovacuum. A superuser with an email exists in
every run. Runs alternate *on* (the ``email`` plugin active: each checkout writes a customer
confirmation and a staff alert row in its transaction and enqueues one job after commit) and
*off* (no notification channel active: no email plugin, no SMS), on, off, on, off by default,
each with its own carts and a fresh server. No cluster runs: nothing is sent inside a request,
so the rows of the *on* runs stay queued, which is checked (all queued, none attempted), as are
checkout_bench's invariants (every checkout 201, stock allocated as ordered, no 5xx, no deadlock,
a clean server log). It prints each run, the mean of each mode, the difference on - off (and
per pair of runs, to show the noise), and the SQL statements of ``order_placed`` alone with the
channel on and off (in-process, warm, rolled back).

It prints numbers; it is not a test (tests/ has the notifications' tests).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import checkout_bench as cb  # noqa: E402 - needs ROOT on the path
from benchmarks.api_bench import free_port, loadavg, machine_cpu  # noqa: E402

SETTINGS = "backoffice.settings"
DEFAULT_DATABASE = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"
STAFF_EMAIL = "owner@shop.example.com"
WARM_EVENTS = 4
SEND_EVENT = "backoffice.notifications.services.send_event"
TICKS = os.sysconf("SC_CLK_TCK")


# --- Processes and CPU ------------------------------------------------------------------------


def _stat(pid: int | str) -> tuple[str, int, float, float] | None:
    """(name, ppid, own CPU seconds, reaped children's CPU seconds) of a process."""
    try:
        head, tail = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)
    except OSError:
        return None
    fields = tail.split()
    return (head.split("(", 1)[-1], int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS,
            (int(fields[13]) + int(fields[14])) / TICKS)


def _processes() -> dict[int, tuple[str, int, float, float]]:
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(entry.name)
            if stat is not None:
                out[int(entry.name)] = stat
    return out


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    stat = _stat(pid)
    return stat[2] + stat[3] if stat else 0.0


class Machine:
    """Every process's CPU, sampled every half second by pid (processes that come and go in
    between are counted, all but their last half second; one shorter than that is missed), to
    tell PostgreSQL's share for this benchmark's database from other work on the machine."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.cmdlines: dict[int, str] = {}

    def _read(self) -> dict[int, tuple[str, int, float]]:
        return {pid: s[:3] for pid, s in _processes().items()}

    def start(self) -> None:
        self.first = self._read()
        self.last = dict(self.first)
        self.busy = machine_cpu()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        while not self.done.wait(0.5):
            self._update()

    def _update(self) -> None:
        for pid, stat in self._read().items():
            self.last[pid] = stat
            if stat[0] == "postgres" and pid not in self.cmdlines:
                try:
                    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
                except OSError:
                    raw = b""
                self.cmdlines[pid] = raw.replace(b"\0", b" ").decode(errors="replace")

    def stop(self, ours: set[int], tree_roots: set[int]) -> dict[str, float | list]:
        """CPU seconds by kind. ``ours``: pids measured exactly elsewhere; ``tree_roots``: their
        descendants too (the cluster's recycled workers)."""
        self.done.set()
        self.thread.join()
        self._update()
        busy, total = machine_cpu()
        parents = {pid: stat[1] for pid, stat in self.last.items()}

        def ours_or_below(pid: int) -> bool:
            for _ in range(20):
                if pid in ours or pid in tree_roots:
                    return True
                pid = parents.get(pid, 0)
                if pid <= 1:
                    return False
            return False

        out: dict[str, float | list] = {"postgres": 0.0, "postgres_other_databases": 0.0,
                                        "redis": 0.0, "kernel_threads": 0.0, "others": 0.0}
        others: Counter[str] = Counter()
        # "postgres: 15/main: user database host(port) state", or an autovacuum worker: a
        # database's; the rest (checkpointer, WAL writer...) serve every database.
        backend = re.compile(r"^postgres: \S+: (\S+ \S+ (\S+\(\d+\)|\[local\])|autovacuum worker )")
        for pid, (name, ppid, cpu) in self.last.items():
            used = cpu - self.first.get(pid, (name, ppid, 0.0))[2]
            if used <= 0 or ours_or_below(pid):
                continue
            if name == "postgres":
                line = self.cmdlines.get(pid, "")
                mine = bool(self.database) and f" {self.database} " in f"{line} "
                other = not mine and backend.match(line) is not None
                out["postgres_other_databases" if other else "postgres"] += used
            elif name == "redis-server":
                out["redis"] += used
            elif ppid == 2 or pid == 2:
                out["kernel_threads"] += used
            else:
                out["others"] += used
                others[name] += used
        out["busy"] = (busy - self.busy[0]) / TICKS
        out["share"] = (busy - self.busy[0]) / max(1, total - self.busy[1])
        out["top_others"] = others.most_common(4)
        return out


class ClusterCpu:
    """CPU of a django-q2 cluster by role. ``manage.py qcluster`` forks a sentinel, which forks
    the workers first, then the monitor, then the pusher (cluster.py ``spawn_cluster``); a
    worker is recycled after 500 tasks (a new pid), and a reaped worker's CPU moves into the
    sentinel's children's time. So: workers = live children other than the monitor and the
    pusher + the sentinel's reaped children."""

    def __init__(self, root: int, workers: int) -> None:
        self.root = root
        self.workers = workers
        self.sentinel = self.monitor = self.pusher = 0

    def identify(self) -> bool:
        procs = _processes()
        sentinels = [pid for pid, s in procs.items() if s[1] == self.root]
        if len(sentinels) != 1:
            return False
        self.sentinel = sentinels[0]
        kids = sorted(pid for pid, s in procs.items() if s[1] == self.sentinel)
        if len(kids) < self.workers + 2:
            return False
        self.monitor, self.pusher = kids[self.workers], kids[self.workers + 1]
        return True

    def snapshot(self) -> dict[str, float]:
        procs = _processes()
        out = {"workers": 0.0, "monitor": 0.0, "pusher": 0.0, "sentinel": 0.0, "main": 0.0}
        if self.root in procs:
            out["main"] = procs[self.root][2]
        if self.sentinel in procs:
            out["sentinel"] = procs[self.sentinel][2]
            out["workers"] += procs[self.sentinel][3]
        for pid, (_name, ppid, own, reaped) in procs.items():
            if ppid != self.sentinel or pid == self.sentinel:
                continue
            role = {self.monitor: "monitor", self.pusher: "pusher"}.get(pid, "workers")
            out[role] += own + reaped
        return out


def stop_process(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM to a process this benchmark started (its own session), then its group if it
    does not stop in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # the group we started it in
            process.wait()


# --- Database, broker, environment --------------------------------------------------------------


def create_database(base_url: str, part: str) -> tuple[str, str]:
    import psycopg

    name = f"bench_notif_{part}_{os.getpid()}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, urlunparse(urlparse(base_url)._replace(path=f"/{name}"))


def redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except (redis.RedisError, OSError):
        return False


def pick_redis(args: argparse.Namespace) -> str | None:
    if args.no_redis:
        return None
    if redis_answers(args.redis_url):
        return args.redis_url
    print(f"{args.redis_url} does not answer: ORM broker and file cache instead", flush=True)
    return None


@dataclass
class Setup:
    base_url: str
    database: str  # the PostgreSQL database made, or the SQLite file
    database_url: str
    data_dir: Path
    redis_url: str | None
    env: dict[str, str]


def setup(args: argparse.Namespace, part: str, extra_env: dict[str, str]) -> Setup:
    """A fresh database, this process's environment as the deployed app's, Django set up."""
    redis_url = pick_redis(args)
    if redis_url:
        cb.claim_redis(redis_url)
    data_dir = Path(tempfile.mkdtemp(prefix=f"notif-bench-{part}-"))
    if args.sqlite:
        database = str(data_dir / "bench.sqlite3")
        database_url = f"sqlite:///{database}"
    else:
        database, database_url = create_database(args.database_url, part)
    env = cb.server_env(data_dir, database_url, args.workers, redis_url)  # bench_env + DEBUG unset
    env.update(extra_env)
    os.environ.update({k: v for k, v in env.items() if k != "PORT"})
    for name in ("DEBUG", "REDIS_URL"):
        if name not in env:
            os.environ.pop(name, None)
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    return Setup(args.database_url, database, database_url, data_dir, redis_url, env)


def teardown(args: argparse.Namespace, state: Setup | None, keep: bool) -> None:
    if state is None:
        return
    try:
        from django.db import connections

        connections.close_all()
    except Exception:  # noqa: S110 - Django may not be set up; drop the database anyway
        pass
    if not args.sqlite:
        cb.drop_database(state.base_url, state.database)
    if state.redis_url:
        cb.release_redis(state.redis_url)
    if keep:
        print(f"logs kept in {state.data_dir}")
    else:
        shutil.rmtree(state.data_dir, ignore_errors=True)


def database_label(state: Setup) -> str:
    from django.db import connection

    if connection.vendor == "postgresql":
        return f"PostgreSQL {connection.pg_version // 10000} (fresh database {state.database})"
    import sqlite3

    return f"SQLite {sqlite3.sqlite_version} (fresh file in a temporary folder, WAL)"


def broker_label() -> str:
    from django_q.brokers import get_broker
    from django_q.conf import Conf

    if Conf.SYNC:
        raise SystemExit("django-q2 is in sync mode here: jobs would run inside the caller")
    broker = get_broker()
    return f"{type(broker).__name__} broker ({broker.info()})"


def percentile(values: list[float], share: float) -> float:
    return cb.percentile(values, share)


# --- The SMTP server (its own process) -----------------------------------------------------------


def smtp_serve(port: int) -> None:
    """A counting SMTP server on 127.0.0.1:``port`` (run as ``--smtp-server PORT``). Answers on
    stdout, one JSON line per command read on stdin: ``status`` (messages, first and last
    arrival), ``dump`` (messages by recipient, notification ids received more than once); it
    exits at the end of stdin."""
    from aiosmtpd.controller import Controller

    message_id = re.compile(rb"^Message-ID:[ \t]*<[^>]*?\bn(\d+)@", re.IGNORECASE | re.MULTILINE)

    class Counting:
        def __init__(self) -> None:
            self.lock = threading.Lock()
            self.messages = 0
            self.first = self.last = 0.0
            self.by_recipient: Counter[str] = Counter()
            self.ids: Counter[int] = Counter()
            self.without_id = 0

        async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
            headers = envelope.content.split(b"\r\n\r\n", 1)[0]
            found = message_id.search(headers)
            now = time.time()
            with self.lock:
                self.messages += 1
                self.first = self.first or now
                self.last = now
                for recipient in envelope.rcpt_tos:
                    self.by_recipient[recipient.lower()] += 1
                if found:
                    self.ids[int(found[1])] += 1
                else:
                    self.without_id += 1
            return "250 Message accepted for delivery"

    handler = Counting()
    # server_hostname: or aiosmtpd asks socket.getfqdn() for every connection.
    controller = Controller(handler, hostname="127.0.0.1", port=port,
                            server_hostname="smtp.bench.local")
    controller.start()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        with handler.lock:
            if line.strip() == "dump":
                answer = {"messages": handler.messages,
                          "by_recipient": dict(handler.by_recipient),
                          "repeated_ids": {k: n for k, n in handler.ids.items() if n > 1},
                          "ids": len(handler.ids), "without_id": handler.without_id}
            else:
                answer = {"messages": handler.messages, "first": handler.first,
                          "last": handler.last}
        print(json.dumps(answer), flush=True)
    controller.stop()


class SmtpServer:
    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log = log_path.open("w")
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and script
            [sys.executable, __file__, "--smtp-server", str(self.port)], cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True,
            start_new_session=True,
        )
        if self._answer().get("ready") is not True:
            raise SystemExit("the SMTP server did not start")

    def _answer(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            self.log.flush()
            raise SystemExit("the SMTP server stopped:\n"
                             + Path(self.log.name).read_text(errors="replace")[-2000:])
        return json.loads(line)

    def ask(self, command: str = "status") -> dict:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._answer()

    def cpu(self) -> float:
        return process_cpu(self.process.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.close()
                self.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                stop_process(self.process, timeout=5)
        if not self.log.closed:
            self.log.close()


# --- The job cluster -------------------------------------------------------------------------


class QCluster:
    def __init__(self, env: dict[str, str], workers: int, log_path: Path) -> None:
        self.workers = workers
        self.log_path = log_path
        self.log = log_path.open("w")
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter
            [sys.executable, "manage.py", "qcluster"], cwd=ROOT,
            env={**env, "Q_WORKERS": str(workers)}, stdout=self.log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.cpu = ClusterCpu(self.process.pid, workers)

    def text(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"qcluster exited with {self.process.returncode}:\n"
                                 f"{self.text()[-3000:]}")
            if re.search(r"Q Cluster .* running\.", self.text()) and self.cpu.identify():
                return
            time.sleep(0.2)
        raise SystemExit(f"qcluster did not start within {timeout:.0f} s:\n{self.text()[-3000:]}")

    def stop(self) -> None:
        stop_process(self.process, timeout=60)
        if not self.log.closed:
            self.log.close()


def cluster_settings_check(env: dict[str, str]) -> str:
    """What the settings the cluster reads say (its environment, in a fresh interpreter)."""
    code = ("import django; django.setup(); from django_q.conf import Conf; "
            "from django_q.brokers import get_broker; from django.conf import settings; "
            "print(Conf.SYNC, Conf.WORKERS, type(get_broker()).__name__, "
            "settings.EMAIL_BACKEND, settings.EMAIL_HOST, settings.EMAIL_PORT, settings.DEBUG)")
    out = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", code], cwd=ROOT, env={**env, "Q_WORKERS": "2"},
        capture_output=True, text=True, check=True,
    ).stdout.split()
    sync, workers, broker, backend, host, port, debug = out
    if sync != "False" or debug != "False":
        raise SystemExit(f"the cluster's settings: sync={sync} DEBUG={debug}; both must be off")
    if backend != "django.core.mail.backends.smtp.EmailBackend":
        raise SystemExit(f"the cluster's EMAIL_BACKEND is {backend}, not SMTP")
    return f"sync off, {workers} workers, {broker} broker, {backend.rsplit('.', 2)[-2]} to " \
           f"{host}:{port}, DEBUG off"


# --- Part 1: delivery ------------------------------------------------------------------------


ADDRESS = {"first_name": "Amina", "last_name": "Otieno", "line1": "Moi Avenue 12",
           "city": "Nairobi", "postal_code": "00100", "country": "KE", "phone": "+254712345678"}


def make_orders(count: int, warm: int, seed: int) -> tuple[list[int], list[int]]:
    """``warm`` + ``count`` guest orders with ``bulk_create``; (warm-up ids, measured ids)."""
    from django.conf import settings
    from django.db import transaction
    from django.db.models import CharField, F, Value
    from django.db.models.functions import Cast

    from backoffice.catalog.models import Product, Variant
    from backoffice.inventory.services import adjust_stock
    from backoffice.orders.models import Order, OrderLine

    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    with transaction.atomic():
        products = Product.objects.bulk_create([
            Product(name=f"Kikoy towel {p}", slug=f"notif-kikoy-{p}", brand="Pwani")
            for p in range(20)])
        variants = Variant.objects.bulk_create([
            Variant(product=products[i // 3], sku=f"KIK-{i:03d}",
                    name=["Blue", "Red", "Sand"][i % 3], position=i % 3,
                    price=Decimal(f"{rng.randint(5, 90)}.{rng.choice(['00', '50'])}"),
                    weight_grams=rng.randint(200, 1500))
            for i in range(60)])
        for variant in variants:  # in stock: the sold-out schedule leaves the products alone
            adjust_stock(variant_id=variant.pk, quantity_change=10_000)
    names = {p.pk: p.name for p in products}
    ids: list[int] = []
    shipping = Decimal("5.00")
    chunk = 1000
    for start in range(0, warm + count, chunk):
        size = min(chunk, warm + count - start)
        with transaction.atomic():
            orders, lines = [], []
            for i in range(start, start + size):
                chosen = rng.sample(variants, k=rng.randint(1, 3))
                items = [(v, rng.randint(1, 2)) for v in chosen]
                subtotal = sum((v.price * q for v, q in items), Decimal("0"))
                address = {**ADDRESS, "last_name": f"Customer {i}"}
                email = (f"warm{i}@example.com" if i < warm
                         else f"customer{i - warm:06d}@example.com")
                orders.append(Order(
                    email=email, phone=ADDRESS["phone"], currency=settings.STORE_CURRENCY,
                    subtotal=subtotal, shipping_total=shipping, total=subtotal + shipping,
                    shipping_method_code="flat_rate", shipping_method_name="Standard delivery",
                    shipping_address=address, billing_address=address, payment_method="manual",
                    pay_on_delivery=True, payment_due_at=None, idempotency_key=str(uuid.uuid4()),
                ))
                lines.append(items)
            made = Order.objects.bulk_create(orders)
            OrderLine.objects.bulk_create([
                OrderLine(order=order, variant=v, product_id_snapshot=v.product_id,
                          product_name=names[v.product_id], variant_name=v.name, sku=v.sku,
                          unit_price=v.price, quantity=q, total=v.price * q)
                for order, items in zip(made, lines, strict=True) for v, q in items])
            ids.extend(o.pk for o in made)
    Order.objects.filter(number__isnull=True).update(number=Cast(
        F("id") + Value(settings.ORDER_NUMBER_START), output_field=CharField()))
    return ids[:warm], ids[warm:]


@dataclass
class Enqueues:
    count: int = 0
    funcs: Counter = field(default_factory=Counter)
    first: float = 0.0
    last: float = 0.0

    def reset(self) -> None:
        self.count, self.funcs, self.first, self.last = 0, Counter(), 0.0, 0.0

    def __call__(self, sender, task, **kwargs) -> None:
        now = time.time()
        self.count += 1
        self.funcs[task.get("func")] += 1
        self.first = self.first or now
        self.last = now


class QueryCount:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


def decide(orders: list) -> tuple[float, int, int]:
    """``order_placed`` for each order in its own transaction: (seconds, SQL statements inside
    the transactions, SQL statements after commit)."""
    from django.db import connection, transaction

    from backoffice.notifications.services import order_placed

    counter = QueryCount()
    inside = 0
    started = time.perf_counter()
    with connection.execute_wrapper(counter):
        for order in orders:
            before = counter.count
            with transaction.atomic():
                order_placed(order)
                inside += counter.count - before
    return time.perf_counter() - started, inside, counter.count - inside


def status_counts(ids: list[int] | None = None) -> Counter:
    from django.db.models import Count

    from backoffice.notifications.models import Notification

    rows = Notification.objects.all()
    if ids is not None:
        rows = rows.filter(order_id__in=ids)
    return Counter(dict(rows.values_list("status").annotate(n=Count("id")).order_by()))


def wait_delivered(smtp: SmtpServer, messages: int, rows: int, stall: float,
                   deciding: threading.Thread | None = None) -> tuple[bool, int]:
    """Until the SMTP server has ``messages`` and ``rows`` rows are sent (or nothing moved for
    ``stall`` seconds after the deciding ended). Returns (done, largest broker backlog seen)."""
    from django.db import close_old_connections
    from django_q.brokers import get_broker

    broker = get_broker()
    backlog = 0
    seen = None
    moved = time.monotonic()
    shown = time.monotonic()
    while True:
        received = smtp.ask()["messages"]
        counts = status_counts()
        close_old_connections()
        backlog = max(backlog, broker.queue_size() or 0)
        if received >= messages and counts.get("sent", 0) >= rows:
            return True, backlog
        state = (received, tuple(sorted(counts.items())))
        if state != seen or (deciding is not None and deciding.is_alive()):
            seen, moved = state, time.monotonic()
        elif time.monotonic() - moved > stall:
            print(f"  nothing moved for {stall:.0f} s: {received} messages, rows {dict(counts)}",
                  flush=True)
            return False, backlog
        if time.monotonic() - shown > 20:
            print(f"  ... {received} of {messages} messages received, rows {dict(counts)}, "
                  f"backlog {backlog}", flush=True)
            shown = time.monotonic()
        time.sleep(0.5)


def job_counts(log_text: str) -> tuple[Counter, int, int]:
    """(jobs processed by function, jobs failed, workers recycled) from the cluster's log."""
    done = Counter(re.findall(r"Processed '([\w.]+)'", log_text))
    failed = len(re.findall(r"Failed '[\w.]+'", log_text))
    recycled = log_text.count("recycled worker")
    return done, failed, recycled


@dataclass
class Delivery:
    """What part 1 measured."""

    events: int = 0
    rows: int = 0
    decide_seconds: float = 0.0
    sql_inside: int = 0
    sql_after: int = 0
    enqueues: Enqueues = field(default_factory=lambda: Enqueues())
    window: float = 0.0  # first enqueue to the last message (or the last row sent)
    delivered: int = 0
    latency: list[float] = field(default_factory=list)
    backlog: int = 0
    wall: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    machine: dict = field(default_factory=dict)
    jobs: Counter = field(default_factory=Counter)
    jobs_failed: int = 0
    recycled: int = 0


def print_delivery(d: Delivery, args: argparse.Namespace, redis: bool) -> None:
    per_msg = 1000 / max(1, d.delivered)
    funcs = ", ".join(f"{name.rsplit('.', 1)[-1]} x{n}" for name, n in d.enqueues.funcs.items())
    print()
    print(f"deciding: {d.events} events in {d.decide_seconds:.2f} s = "
          f"{d.events / d.decide_seconds:.0f} events/s, {d.rows / d.decide_seconds:.0f} rows/s "
          f"({d.rows} rows); SQL statements per event: {d.sql_inside / d.events:.1f} in the "
          f"transaction + {d.sql_after / d.events:.1f} after commit (the enqueue); "
          f"{d.enqueues.count} jobs enqueued from this process ({funcs}); the cluster was "
          f"sending meanwhile")
    print(f"sending: {d.delivered} messages in {d.window:.1f} s from the first enqueue to the "
          f"last message = {d.delivered / d.window:.1f} messages/s "
          f"({d.events / d.window:.1f} events/s); the deciding ended "
          f"{d.enqueues.last - d.enqueues.first:.1f} s after the first enqueue; largest broker "
          f"backlog seen: {d.backlog} jobs")
    print(f"sent_at - created_at: p50 {percentile(d.latency, 0.5):.1f} s, "
          f"p90 {percentile(d.latency, 0.9):.1f} s, "
          f"max {max(d.latency, default=float('nan')):.1f} s")
    jobs = ", ".join(f"{name.rsplit('.', 1)[-1]} {n}" for name, n in d.jobs.most_common())
    print(f"jobs the cluster ran (its log): {jobs}; failed {d.jobs_failed}; workers recycled "
          f"{d.recycled}")
    cpu = d.cpu
    parts = [f"workers {cpu['workers']:.1f} ({cpu['workers'] * per_msg:.1f} ms/message)",
             f"monitor {cpu['monitor']:.1f} ({cpu['monitor'] * per_msg:.1f})",
             f"pusher {cpu['pusher']:.1f}", f"sentinel {cpu['sentinel']:.1f}",
             f"SMTP server {cpu['smtp']:.1f} ({cpu['smtp'] * per_msg:.2f})"]
    if not args.sqlite:
        parts.append(f"PostgreSQL {cpu['postgres']:.1f} ({cpu['postgres'] * per_msg:.1f})")
    if redis:
        parts.append(f"Redis {cpu['redis']:.1f}")
    parts.append(f"this process (deciding, polling) {cpu['client']:.1f}")
    m = d.machine
    print(f"CPU seconds over {d.wall:.1f} s: {', '.join(parts)}")
    outside = m["others"] + m["postgres_other_databases"]
    rest = m["busy"] - sum(cpu.values()) - outside - m["kernel_threads"]
    top = ", ".join(f"{name} {used:.1f}" for name, used in m["top_others"])
    print(f"machine: {m['share']:.0%} busy of {os.cpu_count()} CPUs ({m['busy']:.1f} CPU s); "
          f"outside this benchmark: other processes {m['others']:.1f}"
          + (f" ({top})" if top else "") + f", other databases' PostgreSQL backends "
          f"{m['postgres_other_databases']:.1f}; kernel threads {m['kernel_threads']:.1f}; "
          f"unattributed (interrupts, processes shorter than the 0.5 s sampling) {rest:.1f}")
    share = outside / max(1e-9, m["busy"] / max(1e-9, m["share"]))
    if share > 0.1:
        print(f"WARNING: work outside this benchmark took {share:.0%} of the machine's CPUs "
              "during the run; the rates are low, run it again on a quiet machine.")


def delivery_checks(d: Delivery, dump: dict, statuses: Counter, expected: int, ids: list[int],
                    warm: int, staff: bool, done: bool, log_text: str) -> list[cb.Check]:
    from backoffice.orders.models import Order

    by_recipient = dump["by_recipient"]
    emails = {e.lower() for e in Order.objects.filter(pk__in=ids).values_list("email", flat=True)}
    not_one = [e for e in emails if by_recipient.get(e, 0) != 1]
    warm_emails = {f"warm{i}@example.com" for i in range(warm)}
    strangers = set(by_recipient) - emails - warm_emails - {STAFF_EMAIL}
    alerts = by_recipient.get(STAFF_EMAIL, 0) - (warm if staff else 0)
    errors = [line for line in log_text.splitlines()
              if re.search(r"\b(ERROR|CRITICAL)\b|Traceback", line)]
    return [
        cb.Check("all delivered before the stall timeout", done, "yes" if done else "no"),
        cb.Check(f"every order ({len(ids)}) got exactly one confirmation", not not_one,
                 f"{len(not_one)} did not" if not_one else f"all {len(emails)} addresses"),
        cb.Check(f"the staff address got one alert per order ({len(ids) if staff else 0})",
                 alerts == (len(ids) if staff else 0), str(alerts)),
        cb.Check("no mail to anyone else", not strangers, str(len(strangers))),
        cb.Check("no notification received twice",
                 not dump["repeated_ids"] and not dump["without_id"],
                 f"{len(dump['repeated_ids'])} repeated, {dump['without_id']} without an id"),
        cb.Check(f"{expected} rows, all sent (none queued, sending or failed)",
                 dict(statuses) == {"sent": expected}, str(dict(statuses))),
        cb.Check("as many messages received as rows",
                 dump["messages"] == expected == dump["ids"],
                 f"{dump['messages']} messages, {dump['ids']} notification ids"),
        cb.Check("only send_event jobs enqueued, at least one per event",
                 d.enqueues.count >= d.events and set(d.enqueues.funcs) == {SEND_EVENT},
                 f"{d.enqueues.count} for {d.events} events"),
        cb.Check("no error in the cluster's log", not errors and not d.jobs_failed,
                 f"{len(errors)} lines" + (f" (first: {errors[0][:200]})" if errors else "")),
    ]


def run_delivery(args: argparse.Namespace) -> int:
    smtp: SmtpServer | None = None
    cluster: QCluster | None = None
    state: Setup | None = None
    failed = True
    try:
        state = setup(args, "delivery", {
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": "127.0.0.1", "EMAIL_TIMEOUT": "20",
        })
        smtp = SmtpServer(state.data_dir / "smtp.log")
        state.env["EMAIL_PORT"] = os.environ["EMAIL_PORT"] = str(smtp.port)
        import django

        started = time.perf_counter()
        django.setup()
        from cachalot.api import cachalot_disabled
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from django.db import connection
        from django_q.signals import pre_enqueue

        from backoffice.notifications.models import Notification
        from backoffice.orders.models import Order
        from backoffice.plugin_host.services import activate_plugins

        call_command("migrate", verbosity=0)
        migrated = time.perf_counter() - started
        with cachalot_disabled():  # the setup's queries would only fill the cache
            activate_plugins(["email", "manual_payment", "flat_rate_shipping"])
            if args.staff:
                get_user_model().objects.create_superuser("owner", STAFF_EMAIL, None)
            made = time.perf_counter()
            warm_ids, ids = make_orders(args.events, WARM_EVENTS, args.seed)
            made = time.perf_counter() - made
        analyzed = analyze()
        numbers = Order.objects.values("number").distinct().count()
        print(f"database: {database_label(state)}, migrated in {migrated:.1f} s; "
              f"{len(warm_ids) + len(ids)} orders ({len(warm_ids)} for the warm-up) made with "
              f"bulk_create in {made:.1f} s, {numbers} distinct numbers; then {analyzed}")
        via = f"REDIS_URL={state.redis_url}" if state.redis_url else "no REDIS_URL"
        staff = (f"one superuser with an email ({STAFF_EMAIL}): every order also alerts it"
                 if args.staff else "no superuser: customer confirmations only")
        print(f"broker: {broker_label()}, {via}; staff: {staff}")
        cluster_env = {**state.env, "LOG_LEVEL": "INFO"}
        print(f"the cluster's settings: {cluster_settings_check(cluster_env)}; SMTP server: "
              f"aiosmtpd on 127.0.0.1:{smtp.port}, its own process", flush=True)
        cluster = QCluster(cluster_env, args.q_workers, state.data_dir / "qcluster.log")
        cluster.wait_ready()
        per_event = 2 if args.staff else 1

        d = Delivery(events=len(ids))
        pre_enqueue.connect(d.enqueues, weak=False)
        decide(list(Order.objects.filter(pk__in=warm_ids).order_by("pk")))
        warm_rows = len(warm_ids) * per_event
        done, _ = wait_delivered(smtp, warm_rows, warm_rows, stall=args.stall)
        if not done:
            raise SystemExit(f"the warm-up events were not delivered; the cluster's log:\n"
                             f"{cluster.text()[-3000:]}")
        warm_messages = smtp.ask()["messages"]
        print(f"cluster: manage.py qcluster, {args.q_workers} workers, LOG_LEVEL=INFO; warmed "
              f"with {len(warm_ids)} events ({warm_messages} messages); CPUs: {os.cpu_count()} "
              f"(shared by the cluster, the SMTP server, the database, Redis and this process); "
              f"load average: {loadavg()}", flush=True)

        orders = list(Order.objects.filter(pk__in=ids).order_by("pk"))
        d.enqueues.reset()
        machine = Machine("" if args.sqlite else state.database)
        machine.start()
        before = (cluster.cpu.snapshot(), smtp.cpu(), own_cpu(), time.time())
        print(f"deciding {len(orders)} events (order_placed, a transaction each) while the "
              f"cluster sends...", flush=True)

        def deciding() -> None:
            try:
                d.decide_seconds, d.sql_inside, d.sql_after = decide(orders)
            finally:
                connection.close()  # this thread's

        thread = threading.Thread(target=deciding)
        thread.start()
        expected = (len(ids) + len(warm_ids)) * per_event
        done, d.backlog = wait_delivered(smtp, expected, expected, stall=args.stall,
                                         deciding=thread)
        thread.join()
        after = (cluster.cpu.snapshot(), smtp.cpu(), own_cpu(), time.time())
        d.machine = machine.stop({os.getpid(), smtp.process.pid}, {cluster.process.pid})
        d.cpu = {k: after[0][k] - before[0][k] for k in after[0]}
        d.cpu.update(smtp=after[1] - before[1], client=after[2] - before[2],
                     postgres=d.machine["postgres"], redis=d.machine["redis"])
        d.wall = after[3] - before[3]
        if not d.decide_seconds:
            raise SystemExit("the deciding did not finish")

        last_message = smtp.ask()["last"]
        sent = list(Notification.objects.filter(order_id__in=ids).values_list(
            "created_at", "sent_at"))
        d.rows = len(sent)
        d.latency = [(s - c).total_seconds() for c, s in sent if s]
        last_sent = max((s.timestamp() for _, s in sent if s), default=0.0)
        d.window = max(last_message, last_sent) - d.enqueues.first
        statuses = status_counts()
        cluster.stop()
        log_text = cluster.text()
        d.jobs, d.jobs_failed, d.recycled = job_counts(log_text)
        dump = smtp.ask("dump")
        smtp.stop()
        d.delivered = dump["messages"] - warm_messages
        print_delivery(d, args, bool(state.redis_url))

        checks = delivery_checks(d, dump, statuses, expected, ids, len(warm_ids),
                                 bool(args.staff), done, log_text)
        print()
        for check in checks:
            print(f"  {'ok  ' if check.ok else 'FAIL'}  {check.name}: {check.value}")
        if d.enqueues.count != d.events:
            print(f"  NOTE  {d.enqueues.count / d.events:.2f} jobs enqueued per event, not one "
                  "as the notifications module says: queue_customer and queue_staff each "
                  "register an on_commit enqueue for the same event key; the second job finds "
                  "its rows sent (or races the first for them: the claim keeps it to one mail)")
        failed = not all(check.ok for check in checks)
        print("invariants: " + ("SOME FAILED" if failed else "all hold"), flush=True)
    finally:
        if cluster is not None:
            cluster.stop()
        if smtp is not None:
            smtp.stop()
        teardown(args, state, args.keep_log)
    return 1 if failed else 0


# --- Part 2: checkout with notifications on and off -----------------------------------------------


def set_email(on: bool) -> None:
    from backoffice.plugin_host.services import update_plugin_config

    update_plugin_config(identifier="email", active=on, changes={})


def notification_checks(mode: str, tokens: list[str]) -> list[cb.Check]:
    from backoffice.notifications.models import Notification
    from backoffice.orders.models import Order

    ids = list(Order.objects.filter(cart__token__in=tokens).values_list("pk", flat=True))
    rows = Notification.objects.filter(order_id__in=ids)
    if mode == "off":
        return [cb.Check("no notification row", not rows.exists(), str(rows.count()))]
    statuses = Counter(rows.values_list("status", flat=True))
    attempted = rows.filter(attempts__gt=0).count()
    audiences = Counter(rows.values_list("audience", flat=True))
    return [
        cb.Check(f"2 rows per order (customer + staff), {2 * len(ids)}",
                 audiences == {"customer": len(ids), "staff": len(ids)}, str(dict(audiences))),
        cb.Check("all still queued, none attempted (nothing sent in a request)",
                 dict(statuses) == {"queued": 2 * len(ids)} and not attempted,
                 f"{dict(statuses)}, {attempted} attempted"),
    ]


def placed_queries(order) -> tuple[int, Counter]:
    """SQL statements of ``order_placed(order)`` alone, in-process, warm (the second of two
    calls), rolled back: (count, by table)."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from backoffice.notifications.services import order_placed

    for _ in range(2):
        with CaptureQueriesContext(connection) as captured, transaction.atomic():
            order_placed(order)
            transaction.set_rollback(True)
    tables = Counter()
    for query in captured.captured_queries:
        if query["sql"].split(" ", 1)[0].upper() in {"BEGIN", "ROLLBACK", "COMMIT"}:
            continue
        found = re.search(r'(?:FROM|INTO|UPDATE)\s+"(\w+)"', query["sql"])
        tables[found[1] if found else query["sql"][:20]] += 1
    return sum(tables.values()), tables


def analyze() -> str:
    """Fresh statistics (and no autovacuum pending) before measuring, as an older database has.
    Returns the statement run."""
    from django.db import connection

    statement = "VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE"
    with connection.cursor() as cursor:
        cursor.execute(statement)
    return statement


def run_checkout_once(label: str, tokens: list[str], fixture: cb.Fixture, state: Setup,
                      args: argparse.Namespace, index: int) -> tuple[cb.Run, int, str]:
    from django.core.cache import cache
    from django.db import connections

    postgres = not args.sqlite
    log_path = state.data_dir / f"gunicorn-{index}.log"
    before = cb.deadlocks(state.database) if postgres else 0
    cache.clear()  # an empty cache for every run
    server = cb.Server(state.env, args.workers, log_path)
    try:
        server.wait_ready(cb.READY_PATH)
        per_start = 4 * args.workers
        warm, fixture.warm_tokens = fixture.warm_tokens[:per_start], fixture.warm_tokens[per_start:]
        cb.warm_up(server, warm, args.workers)
        print(f"{label}: gunicorn {args.workers} sync workers on 127.0.0.1:{server.port}, warmed "
              f"with {len(warm)} checkouts; {len(tokens)} checkouts...", flush=True)
        run = cb.spread(server, tokens, args.clients)
    finally:
        server.stop()
    connections.close_all()
    time.sleep(0.5)
    dead = (cb.deadlocks(state.database) - before) if postgres else 0
    return run, dead, log_path.read_text(errors="replace")


def run_checkout(args: argparse.Namespace) -> int:
    state: Setup | None = None
    failed = True
    modes = [("on", "off")[i % 2] for i in range(args.runs)]
    try:
        state = setup(args, "checkout", {})
        import django

        django.setup()
        from cachalot.api import cachalot_disabled
        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.core.management import call_command

        from backoffice.catalog.models import Variant

        started = time.perf_counter()
        call_command("migrate", verbosity=0)
        migrated = time.perf_counter() - started
        fixture_args = argparse.Namespace(buyers=1, units=1, carts=args.carts * args.runs,
                                          skus=args.skus, seed=args.seed, workers=args.workers)
        with cachalot_disabled():
            fixture = cb.make_fixture(fixture_args)
            warm = Variant.objects.get(sku=cb.WARM_SKU)
            fixture.warm_tokens += cb._carts(  # noqa: SLF001 - checkout_bench's helper
                [[(warm.pk, 1)]] * (4 * args.workers * args.runs))
            get_user_model().objects.create_superuser("owner", STAFF_EMAIL, None)
        analyzed = analyze()
        print(f"database: {database_label(state)}, migrated in {migrated:.1f} s; catalog and "
              f"{len(fixture.spread_tokens)} carts made in "
              f"{time.perf_counter() - started - migrated:.1f} s (checkout_bench.make_fixture), "
              f"then {analyzed}")
        cache = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
        print(f"runs: {', '.join(modes)}; {args.carts} carts each (1-3 of {args.skus} SKUs), "
              f"{args.clients} clients; server: gunicorn {args.workers} sync workers, DEBUG "
              f"unset, LOG_LEVEL=WARNING, cachalot on, cache {cache}, {broker_label()}; one "
              f"superuser with an email; no cluster running; load average: {loadavg()}",
              flush=True)

        rows, results, checks_all = [], [], []
        for index, mode in enumerate(modes):
            with cachalot_disabled():
                set_email(mode == "on")
            tokens = fixture.spread_tokens[index * args.carts:(index + 1) * args.carts]
            label = f"{mode} #{modes[:index + 1].count(mode)}"
            run, dead, log_text = run_checkout_once(label, tokens, fixture, state, args, index)
            results.extend(run.results)
            statuses = Counter(r.status for r in run.results)
            checks = [cb.Check(f"all {len(tokens)} checkouts 201",
                               statuses == {201: len(tokens)}, str(dict(statuses)))]
            common = cb.common_checks(run, dead, log_text)
            if args.sqlite:  # no pg_stat_database; SQLite waits for its lock instead
                common = [c for c in common if "pg_stat_database" not in c.name]
            checks += notification_checks(mode, tokens) + common
            rows.append({**cb.summary(f"notifications {label}", run, checks), "mode": mode})
            checks_all += checks
        from backoffice.orders.models import Order

        # An order of an "off" run: no rows yet, so "on" writes (and rolls back) its two.
        off_runs = [i for i, mode in enumerate(modes) if mode == "off"]
        order = (Order.objects.filter(cart__token=fixture.spread_tokens[off_runs[-1] * args.carts])
                 .first() if off_runs else None)
        if order is not None:
            counted = {}
            for mode in ("on", "off"):
                with cachalot_disabled():
                    set_email(mode == "on")
                counted[mode] = placed_queries(order)
            print("order_placed(order) alone, in-process, warm, rolled back: " + "; ".join(
                f"{mode} {n} SQL statements ("
                + ", ".join(f"{table} {k}" for table, k in tables.most_common()) + ")"
                for mode, (n, tables) in counted.items()), flush=True)
        total = cb.Run(results=results, wall=0.0, server_cpu=0.0, postgres_cpu=0.0,
                       client_cpu=0.0, machine_busy=0.0, other_cpu=0.0)
        stock = cb.spread_checks(total, fixture)
        cb.print_report(rows)
        print("\nall runs together (checkout_bench's spread invariants):")
        for check in stock:
            print(f"  {'ok  ' if check.ok else 'FAIL'}  {check.name}: {check.value}")
        print_difference(rows)
        failed = any(not c.ok for c in checks_all + stock)
        print(f"\nload average after: {loadavg()}")
        print("invariants: " + ("SOME FAILED" if failed else "all hold"), flush=True)
    finally:
        teardown(args, state, args.keep_log)
    return 1 if failed else 0


def print_difference(rows: list[dict]) -> None:
    keys = [("orders_s", "orders/s", 1), ("p50", "p50 ms", 1), ("p90", "p90 ms", 1),
            ("q_201", "queries", 0), ("db_201", "db ms", 2), ("server_201", "server ms", 1),
            ("gunicorn_cpu", "gunicorn CPU", 1), ("postgres_cpu", "postgres CPU", 1)]
    on = [r for r in rows if r["mode"] == "on"]
    off = [r for r in rows if r["mode"] == "off"]
    if not on or not off:
        return
    mean_on = {k: statistics.fmean(r[k] for r in on) for k, _, _ in keys}
    mean_off = {k: statistics.fmean(r[k] for r in off) for k, _, _ in keys}
    header = f"{'on vs off':<22}" + "".join(f"{name:>13}" for _, name, _ in keys)
    print()
    print(header)
    print("-" * len(header))

    def line(label: str, values: dict, sign: str = "") -> None:
        print(f"{label:<22}" + "".join(f"{values[k]:>{sign}13.{d}f}" for k, _, d in keys))

    line(f"on, mean of {len(on)}", mean_on)
    line(f"off, mean of {len(off)}", mean_off)
    line("on - off", {k: mean_on[k] - mean_off[k] for k, _, _ in keys}, "+")
    print(f"{'on / off - 1':<22}" + "".join(
        f"{mean_on[k] / mean_off[k] - 1:>+13.1%}" if mean_off[k] else f"{'-':>13}"
        for k, _, _ in keys))
    for number, (a, b) in enumerate(zip(on, off, strict=False), 1):
        line(f"on #{number} - off #{number}", {k: a[k] - b[k] for k, _, _ in keys}, "+")
    print("queries, db ms, server ms: medians per request (Server-Timing); CPU: ms per request; "
          "the pairs show the run-to-run noise.")


# --- Main ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=10_000,
                        help="delivery: order events (orders placed) to notify")
    parser.add_argument("--staff", type=int, choices=[0, 1], default=0,
                        help="delivery: superusers to alert of each order (0 or 1)")
    parser.add_argument("--q-workers", type=int, default=2, help="delivery: cluster workers")
    parser.add_argument("--stall", type=float, default=150,
                        help="delivery: give up when nothing moved for this many seconds")
    parser.add_argument("--carts", type=int, default=400, help="checkout: carts per run")
    parser.add_argument("--runs", type=int, default=4,
                        help="checkout: runs, alternating on and off (on first)")
    parser.add_argument("--skus", type=int, default=1000, help="checkout: SKUs in the catalog")
    parser.add_argument("--clients", type=int, default=16, help="checkout: concurrent clients")
    parser.add_argument("--workers", type=int, default=2, help="checkout: gunicorn workers")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sqlite", action="store_true",
                        help="SQLite in a temporary folder instead of PostgreSQL")
    parser.add_argument("--database-url",
                        default=os.environ.get("DATABASE_URL") or DEFAULT_DATABASE,
                        help="the PostgreSQL server to make the fresh databases on (default "
                        "$DATABASE_URL, else %(default)s)")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS,
                        help="broker and cache when it answers (an empty database, emptied at "
                        "the end; default %(default)s)")
    parser.add_argument("--no-redis", action="store_true",
                        help="the ORM broker and a file cache even if Redis answers")
    parser.add_argument("--only", choices=["delivery", "checkout"], help="run one part")
    parser.add_argument("--keep-log", action="store_true",
                        help="keep the logs of the cluster, the SMTP server and gunicorn")
    parser.add_argument("--smtp-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.smtp_server:
        smtp_serve(args.smtp_server)
        return 0
    if not args.sqlite and not args.database_url.startswith(("postgres://", "postgresql://")):
        print("--database-url must be postgres://... (or use --sqlite)", file=sys.stderr)
        return 2
    if args.only == "delivery":
        return run_delivery(args)
    if args.only == "checkout":
        return run_checkout(args)
    # Both parts, each in its own process (Django is set up once per process and database).
    status = 0
    for part, title in (("delivery", "Part 1: notifications delivered by SMTP"),
                        ("checkout", "Part 2: checkout with notifications on and off")):
        print(f"\n=== {title} ===", flush=True)
        status |= subprocess.call([sys.executable, __file__, *sys.argv[1:],  # noqa: S603
                                   "--only", part], cwd=ROOT)
    return status


if __name__ == "__main__":
    sys.exit(main())
