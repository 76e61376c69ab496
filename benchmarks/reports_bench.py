"""Dashboard and reports benchmark: the admin dashboard and every report page at 200k orders.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres make bench-reports
    BENCH_ARGS="--orders 50000 --products 20000" make bench-reports      # a smaller run

It needs PostgreSQL. It makes a fresh database ``bench_reports_<pid>`` on that server, migrates
it and drops it at the end, whatever happens.

What it does:

1. makes a catalog of ``--products`` products (``generate_catalog``: 1-6 variants each, stock in
   two warehouses) and ``--orders`` orders spread over the last ``--days`` days (a weekly rhythm
   and a slow growth), written with ``COPY`` (orders, lines, refunds and their lines, payments,
   shipments): 1 to 4 lines each, popular products sold more (a Zipf-like spread), payment
   providers M-Pesa, Stripe, Chapa and cash on delivery, coupons on 12% of the orders, 5% never
   paid (cancelled), about 4% of the paid ones refunded (two thirds in full, a third by
   lines, 1 to 10 days later); recent orders open (to fulfil, awaiting payment, some whose
   payment failed, parcels on the road for too long);
2. builds the rollup from nothing (``rebuild_days`` over every day: what the hourly job does on
   its first run, the days' rows and the complete months'), timed;
3. requests the dashboard and each report page (default range: the last 30 days; the sales
   report and the four breakdowns over a year too, and the CSV and XLSX exports) through
   Django's test client as a superuser, cachalot off (the database path), after one warm-up
   each; prints, per page, the queries (CaptureQueriesContext), the database time (the
   ``Server-Timing`` header's ``db`` entry, from ``backoffice.observability``) and the response
   time, median of ``--repeat`` requests, against the budget (DESIGN.md): at most 12 queries
   and under 300 ms of database time a page.

It prints numbers; it is not a test (tests/test_reports.py is). It exits non-zero when a page
breaks the budget or answers other than 200.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import re
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUERY_BUDGET = 12
DB_MS_BUDGET = 300.0
PROVIDERS = [("mpesa", 0.45), ("stripe", 0.30), ("chapa", 0.10), ("manual", 0.15)]
COUPONS = [f"PROMO{n:02d}" for n in range(20)]
ADDRESS = json.dumps({"first_name": "A", "last_name": "B", "line1": "Moi Ave 1",
                      "city": "Nairobi", "country": "KE"})
CENT = Decimal("0.01")


def create_database(base_url: str, prefix: str = "bench_reports") -> tuple[str, str]:
    import psycopg

    name = f"{prefix}_{os.getpid()}"
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name, urlunparse(urlparse(base_url)._replace(path=f"/{name}"))


def drop_database(base_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- Data -----------------------------------------------------------------------------------


def setup_django(database: str, database_url: str, data_dir: Path, **env: str) -> None:
    """Set Django up in this process on the fresh ``database`` (settings as deployed but for the
    test client's host, no SSL redirect, quiet logs, no Redis) with ``env`` on top, migrate it and
    print its line. The in-process benchmarks (reports, admin search, integrations) share it."""
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "backoffice.settings", "DATABASE_URL": database_url,
        "SECRET_KEY": secrets.token_urlsafe(50), "ALLOWED_HOSTS": "testserver",
        "SECURE_SSL_REDIRECT": "0", "LOG_LEVEL": "WARNING", "LOG_FORMAT": "console",
        "DATA_DIR": str(data_dir), **env,
    })
    for name in ("DEBUG", "REDIS_URL"):
        os.environ.pop(name, None)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    print(f"database: PostgreSQL {connection.pg_version // 10000} {database}, migrated in "
          f"{time.perf_counter() - started:.1f} s; CPUs: {os.cpu_count()}; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; time zone {settings.TIME_ZONE}",
          flush=True)


def tear_down(base_url: str, database: str, data_dir: Path, *, keep: str = "") -> None:
    """Close Django's connections and drop ``database`` (unless ``keep`` says why it stays:
    printed), and remove ``data_dir``. For a ``finally``: Django may not be set up."""
    import shutil

    try:
        from django.db import connections

        connections.close_all()
    except Exception:  # noqa: S110 - Django may not be set up; drop the database anyway
        pass
    if keep:
        print(f"database kept: {database}{keep}")
    else:
        drop_database(base_url, database)
    shutil.rmtree(data_dir, ignore_errors=True)


def _money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _copy(table: str, columns: list[str], rows) -> int:
    from django.db import connection

    count = 0
    with connection.cursor() as cursor:
        sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
        with cursor.cursor.copy(sql) as copy:
            for row in rows:
                copy.write_row(row)
                count += 1
    return count


def _next_ids(table: str, count: int) -> int:
    """Reserve ``count`` ids of ``table``'s sequence; returns the first."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id'))")
        first = cursor.fetchone()[0]
        cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), %s)",
                       [first + count])
    return first


def make_orders(args: argparse.Namespace) -> dict:
    """``args.orders`` orders over the last ``args.days`` days, with COPY."""
    from django.conf import settings
    from django.utils import timezone

    from backoffice.admin_filters import start_of_day
    from backoffice.catalog.models import Variant
    from backoffice.promotions.models import Coupon

    rng = random.Random(args.seed)  # noqa: S311 - test data
    variants = list(Variant.objects.order_by("pk").values_list(
        "pk", "product_id", "product__name", "sku", "price"))
    rng.shuffle(variants)  # popularity does not follow the ids
    coupon_ids = {code: Coupon.objects.create(code=code, value=Decimal("10")).pk
                  for code in COUPONS}
    currency = settings.STORE_CURRENCY
    now = timezone.now()
    today = timezone.localdate()
    first_day = today - dt.timedelta(days=args.days - 1)
    # Orders per day: a weekly rhythm and growth over the year, scaled to the total asked.
    weights = []
    for n in range(args.days):
        day = first_day + dt.timedelta(days=n)
        weekly = 1.25 if day.weekday() in (4, 5) else 0.9 if day.weekday() == 0 else 1.0
        weights.append(weekly * (0.7 + 0.6 * n / max(args.days - 1, 1)))
    scale = args.orders / sum(weights)
    per_day = [int(w * scale) for w in weights]
    per_day[-1] += args.orders - sum(per_day)
    providers = [p for p, _ in PROVIDERS]
    provider_weights = [w for _, w in PROVIDERS]
    order_cols = ["id", "number", "token", "email", "phone", "status", "payment_status",
                  "fulfilment_status", "pay_on_delivery", "cancelled_at", "currency", "subtotal",
                  "discount_total", "shipping_total", "total", "refunded_total",
                  "shipping_method_code", "shipping_method_name", "shipping_address",
                  "billing_address", "coupon_id", "coupon_code", "payment_method",
                  "payment_due_at", "paid_at", "customer_note", "created_at", "updated_at"]
    line_cols = ["id", "order_id", "variant_id", "product_id_snapshot", "product_name",
                 "variant_name", "sku", "options", "unit_price", "quantity", "discount_amount",
                 "total", "quantity_shipped", "quantity_refunded"]
    first_order = _next_ids("orders_order", args.orders)
    first_line = _next_ids("orders_orderline", args.orders * 5)
    orders, lines, refunds, payments, shipments = [], [], [], [], []
    order_id, line_id = first_order, first_line
    zipf = [1 / (rank + 1) ** 0.9 for rank in range(len(variants))]
    cumulative, running = [], 0.0
    for weight in zipf:
        running += weight
        cumulative.append(running)
    for n, count in enumerate(per_day):
        day = first_day + dt.timedelta(days=n)
        start = start_of_day(day)
        age = (today - day).days
        for _ in range(count):
            placed = start + dt.timedelta(seconds=rng.randrange(86400))
            if placed > now:
                placed = now - dt.timedelta(seconds=rng.randrange(1, 3600))
            chosen = rng.choices(variants, cum_weights=cumulative, k=rng.choice((1, 1, 2, 2, 3, 4)))
            items = {}
            for variant in chosen:
                items.setdefault(variant[0], [variant, 0])[1] += rng.choice((1, 1, 1, 2, 3))
            subtotal = sum((_money(Decimal(v[4]) * q) for v, q in items.values()), Decimal(0))
            coupon = rng.choice(COUPONS) if rng.random() < 0.12 else ""
            discount = _money(subtotal / 10) if coupon else Decimal("0")
            shipping = Decimal("0") if subtotal > 5000 else Decimal("250.00")
            total = subtotal - discount + shipping
            method = rng.choices(providers, provider_weights)[0]
            cod = method == "manual"
            roll = rng.random()
            paid_at = cancelled_at = None
            refunded = Decimal("0")
            status, payment, fulfilment = "completed", "paid", "delivered"
            if age <= 1 and roll < 0.15:
                status, payment, fulfilment = "open", "unpaid", "unfulfilled"  # awaiting
            elif roll < 0.05:
                status, payment, fulfilment = "cancelled", "unpaid", "unfulfilled"
                cancelled_at = placed + dt.timedelta(hours=1)
            else:
                paid_at = placed + dt.timedelta(minutes=rng.randrange(1, 90))
                if paid_at > now:
                    paid_at = now
                if age <= 3:
                    status, fulfilment = "open", "unfulfilled"
                elif age <= 12:
                    status, fulfilment = "open", rng.choice(("shipped", "shipped", "delivered"))
                    if fulfilment == "delivered":
                        status = "completed"
            # Discount shares per line, the last line taking the rounding.
            share_left = discount
            order_lines = list(items.values())
            for index, (variant, quantity) in enumerate(order_lines):
                gross = _money(Decimal(variant[4]) * quantity)
                share = share_left if index == len(order_lines) - 1 else (
                    _money(discount * gross / subtotal) if subtotal else Decimal("0"))
                share_left -= share
                shipped = quantity if fulfilment in ("shipped", "delivered") else 0
                lines.append([line_id, order_id, variant[0], variant[1], variant[2], "",
                              variant[3], "{}", variant[4], quantity, share, gross - share,
                              shipped, 0])
                line_id += 1
            if paid_at and rng.random() < 0.04 and age > 1:
                when = paid_at + dt.timedelta(days=rng.randrange(1, 11), hours=rng.randrange(8))
                if when < now:
                    if rng.random() < 0.67:
                        amount = total
                        refunds.append((order_id, when, amount, None))
                    else:
                        first = lines[-len(order_lines)]
                        amount = _money(first[11] / first[9])  # one unit of the first line
                        refunds.append((order_id, when, amount, (first[0], 1)))
                        first[13] = 1
                    refunded = amount
                    payment = "refunded" if amount >= total else "partially_refunded"
                    if payment == "refunded":
                        status = "completed"
            if payment == "unpaid" and status == "open" and rng.random() < 0.3:
                payments.append((order_id, method, total, "failed", placed))
            if fulfilment == "shipped":
                shipments.append((order_id, placed + dt.timedelta(days=1)))
            orders.append([
                order_id, str(10000 + order_id), str(uuid.uuid4()), f"c{order_id}@example.com",
                "", status, payment, fulfilment, cod, cancelled_at, currency, subtotal,
                discount, shipping, total, refunded, "flat_rate", "Flat rate", ADDRESS, ADDRESS,
                coupon_ids[coupon] if coupon else None, coupon, method, None, paid_at, "",
                placed, paid_at or placed,
            ])
            order_id += 1
    started = time.perf_counter()
    _copy("orders_order", order_cols, orders)
    _copy("orders_orderline", line_cols, lines)
    refund_cols = ["id", "order_id", "payment_id", "amount", "reason", "restock", "status",
                   "provider_refund_id", "actor_id", "actor_label", "created_at"]
    first_refund = _next_ids("orders_refund", len(refunds))
    _copy("orders_refund", refund_cols, (
        [first_refund + i, oid, None, amount, "bench", False, "succeeded", "", None, "bench",
         when] for i, (oid, when, amount, _line) in enumerate(refunds)))
    first_refund_line = _next_ids("orders_refundline", len(refunds))
    _copy("orders_refundline", ["id", "refund_id", "line_id", "quantity"], (
        [first_refund_line + i, first_refund + i, line[0], line[1]]
        for i, (_o, _w, _a, line) in enumerate(refunds) if line))
    first_payment = _next_ids("payments_payment", len(payments))
    _copy("payments_payment", [
        "id", "order_id", "provider", "amount", "currency", "status", "provider_payment_id",
        "idempotency_key", "next_action", "message", "amount_refunded", "phone", "created_at",
        "updated_at"], (
        [first_payment + i, oid, provider, amount, currency, status, "", f"bench-{i}", "{}", "",
         Decimal("0"), "", when, when]
        for i, (oid, provider, amount, status, when) in enumerate(payments)))
    first_shipment = _next_ids("orders_shipment", len(shipments))
    _copy("orders_shipment", ["id", "order_id", "carrier", "tracking_number", "tracking_url",
                              "shipped_at", "delivered_at", "created_at"], (
        [first_shipment + i, oid, "G4S", f"T{i}", "", when, None, when]
        for i, (oid, when) in enumerate(shipments)))
    return {"orders": len(orders), "lines": len(lines), "refunds": len(refunds),
            "payments": len(payments), "shipments": len(shipments),
            "copy_s": time.perf_counter() - started, "first_day": first_day}


def analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE)")


# --- Measuring ------------------------------------------------------------------------------

_TIMING = re.compile(r'db;dur=([\d.]+);desc="(\d+) queries", total;dur=([\d.]+)')


class Timer:
    """An execute wrapper keeping each query's time (ms) and SQL."""

    def __init__(self) -> None:
        self.timings: list[tuple[float, str]] = []

    def __call__(self, execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.timings.append(((time.perf_counter() - started) * 1000, sql))


def measure(client, url: str, repeat: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    response = client.get(url)  # warm-up
    status = response.status_code
    timer = Timer()
    with CaptureQueriesContext(connection) as captured, connection.execute_wrapper(timer):
        response = client.get(url)
    queries = len(captured.captured_queries)
    db_ms, total_ms, wall_ms = [], [], []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url)
        wall_ms.append((time.perf_counter() - started) * 1000)
        found = _TIMING.search(response.get("Server-Timing", ""))
        if found:
            db_ms.append(float(found.group(1)))
            total_ms.append(float(found.group(3)))
        status = max(status, response.status_code)

    return {"url": url, "status": status, "queries": queries,
            "db_ms": statistics.median(db_ms) if db_ms else float("nan"),
            "db_ms_max": max(db_ms) if db_ms else float("nan"),
            "total_ms": statistics.median(total_ms) if total_ms else float("nan"),
            "wall_ms": statistics.median(wall_ms), "bytes": len(response.content),
            "sql": sorted(timer.timings, key=lambda pair: -pair[0])}


def build(args: argparse.Namespace) -> None:
    """The catalog, the orders and the rollup (from nothing), each timed."""
    from backoffice.catalog.demo import generate_catalog
    from backoffice.reports import rollup
    from backoffice.reports.models import DailyBreakdown, DailySales, MonthlyBreakdown

    started = time.perf_counter()
    catalog = generate_catalog(args.products, args.seed)
    print(f"catalog: {catalog.products} products, {catalog.variants} variants in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    started = time.perf_counter()
    made = make_orders(args)
    analyze()
    print(f"orders: {made['orders']} over {args.days} days from {made['first_day']}, "
          f"{made['lines']} lines, {made['refunds']} refunds, {made['payments']} "
          f"failed payments, {made['shipments']} parcels on the road: generated and "
          f"copied in {time.perf_counter() - started:.1f} s (COPY {made['copy_s']:.1f} s)",
          flush=True)
    started = time.perf_counter()
    days = rollup.days_to_refresh()
    written = rollup.rebuild_days(days)
    built = time.perf_counter() - started

    print(f"rollup: {written} days built from nothing in {built:.1f} s "
          f"({DailySales.objects.count()} daily rows, "
          f"{DailyBreakdown.objects.count()} breakdown rows, "
          f"{MonthlyBreakdown.objects.count()} monthly breakdown rows); ", end="", flush=True)
    started = time.perf_counter()
    again = rollup.refresh_rollup()
    print(f"an hourly run right after: {again} in {time.perf_counter() - started:.2f} s",
          flush=True)
    analyze()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=5, help="timed requests per page")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true",
                        help="keep the database at the end (its name is printed)")
    parser.add_argument("--reuse", metavar="NAME",
                        help="measure a database kept by --keep (bench_reports_...) again: no "
                        "data made, the rollup left as it is")
    parser.add_argument("--show-queries", action="store_true",
                        help="print each page's queries, slowest first, with their time")
    args = parser.parse_args()
    base_url = os.environ.get("DATABASE_URL", "")
    if not base_url.startswith(("postgres://", "postgresql://")):
        print("The reports benchmark needs PostgreSQL: DATABASE_URL=postgres://user@host:5432/"
              "postgres (a fresh database is made there and dropped at the end).",
              file=sys.stderr)
        sys.exit(2)
    data_dir = Path(tempfile.mkdtemp(prefix="reports-bench-"))
    if args.reuse:
        if not args.reuse.startswith("bench_reports_"):
            parser.error("--reuse takes a database this benchmark made (bench_reports_...)")
        database = args.reuse
        database_url = urlunparse(urlparse(base_url)._replace(path=f"/{database}"))
    else:
        database, database_url = create_database(base_url)
    failed = True
    try:
        setup_django(database, database_url, data_dir, SERVER_TIMING="1")
        from cachalot.api import cachalot_disabled
        from django.conf import settings
        from django.test import Client
        from django.test.utils import override_settings

        from backoffice.reports import rollup

        if args.reuse:
            args.products = 0
        with cachalot_disabled():
            if not args.reuse:
                build(args)
            from django.contrib.auth import get_user_model

            user, _ = get_user_model().objects.get_or_create(
                username="bench", defaults={"is_staff": True, "is_superuser": True})
            client = Client()
            client.force_login(user)
            today = rollup.today()
            year = f"from={today - dt.timedelta(days=364)}&to={today}"
            pages = [
                ("dashboard", "/admin/"),
                ("sales by day (30 days)", "/admin/reports/dailysales/"),
                ("sales by week (a year)", f"/admin/reports/dailysales/?{year}&group=week"),
                ("sales by month (a year)", f"/admin/reports/dailysales/?{year}&group=month"),
                ("by category (30 days)", "/admin/reports/dailysales/categories/"),
                ("by product (30 days)", "/admin/reports/dailysales/products/"),
                ("by payment provider", "/admin/reports/dailysales/providers/"),
                ("by coupon (30 days)", "/admin/reports/dailysales/coupons/"),
                ("refunds (30 days)", "/admin/reports/dailysales/refunds/"),
                ("by product (a year)", f"/admin/reports/dailysales/products/?{year}"),
                ("by category (a year)", f"/admin/reports/dailysales/categories/?{year}"),
                ("by provider (a year)", f"/admin/reports/dailysales/providers/?{year}"),
                ("by coupon (a year)", f"/admin/reports/dailysales/coupons/?{year}"),
                ("export: products CSV", "/admin/reports/dailysales/products/?format=csv"),
                ("export: products XLSX", "/admin/reports/dailysales/products/?format=xlsx"),
                ("export: sales XLSX", "/admin/reports/dailysales/?format=xlsx"),
            ]
            storages = {**settings.STORAGES, "staticfiles": {
                "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
            results = []
            with override_settings(STORAGES=storages):
                for label, url in pages:
                    results.append((label, measure(client, url, args.repeat)))
        print(f"\npages as a superuser, Django test client, cachalot off; median of "
              f"{args.repeat} after a warm-up (budget: <= {QUERY_BUDGET} queries, < "
              f"{DB_MS_BUDGET:.0f} ms database time):")
        print(f"{'page':<26} {'status':>6} {'queries':>8} {'db ms':>8} {'db max':>8} "
              f"{'total ms':>9} {'KiB':>7}  verdict")
        failed = False
        for label, row in results:
            ok = (row["status"] == 200 and row["queries"] <= QUERY_BUDGET
                  and row["db_ms_max"] < DB_MS_BUDGET)
            failed |= not ok
            print(f"{label:<26} {row['status']:>6} {row['queries']:>8} {row['db_ms']:>8.1f} "
                  f"{row['db_ms_max']:>8.1f} {row['total_ms']:>9.1f} "
                  f"{row['bytes'] / 1024:>7.0f}  {'ok' if ok else 'OVER BUDGET'}")
            if args.show_queries:
                for ms, sql in row["sql"]:
                    print(f"{'':<8}{ms:8.2f} ms  {' '.join(sql.split())[:150]}")
        print("\nbudget: " + ("every page within it" if not failed else "SOME PAGE IS OVER"))
    finally:
        tear_down(base_url, database, data_dir, keep=(
            f" (--reuse {database} measures it again)" if args.keep or args.reuse else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
