"""Admin search benchmark: the changelist searches staff type most, at 100k products.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres make bench-admin-search
    BENCH_ARGS="--products 20000 --orders 40000" make bench-admin-search    # a smaller run

It needs PostgreSQL. It makes a fresh database ``bench_admin_search_<pid>`` on that server,
migrates it and drops it at the end, whatever happens (``--keep`` keeps it, ``--reuse NAME``
measures a kept one again after migrating it: the way to see a new migration on a full table).

What it does:

1. seeds the data as ``benchmarks/reports_bench.py`` does (its code, imported): ``--products``
   products with 1-6 variants each (about 2.2 per product) and their stock in two warehouses,
   ``--orders`` orders over a year written with ``COPY``; then gives every order a distinct
   Kenyan phone number (``+25471xxxxxxx``) and runs ``VACUUM (ANALYZE)``;
2. picks ``--terms`` terms per kind of search from the data (a fixed seed), each one used
   once, so that no answer comes from a cache or from a page the database has just read:
   a variant by exact SKU, by SKU prefix, by a SKU's middle part; stock by exact SKU; an order
   by number, by email, by a part of an email, by phone typed as staff type it
   (``0712 345 678`` for ``+254712345678``); a product by name;
3. requests each search's changelist through Django's test client as a superuser, cachalot off
   (the database path), after one warm-up request per changelist with another term; prints per
   kind the response time (p50 and max over the terms), the database time (the
   ``Server-Timing`` header's ``db`` entry), the queries per request, whether the row the search
   must find was on the first page, and a verdict against the budget (DESIGN.md: an admin search
   under 300 ms; PASS when the slowest term's response is under it and every term found its row).

It prints numbers; it is not a test (tests/test_admin_search.py is). It exits non-zero when a
search breaks the budget, misses its row or answers other than 200.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode, urlparse, urlunparse

import reports_bench  # benchmarks/ is on the path: this file runs as a script from there

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUDGET_MS = 300.0
PREFIX = "bench_admin_search"
_TIMING = re.compile(r"db;dur=([\d.]+);desc=\"(\d+) queries\"")


def seed(args: argparse.Namespace) -> None:
    from django.db import connection

    from backoffice.catalog.demo import generate_catalog

    started = time.perf_counter()
    catalog = generate_catalog(args.products, args.seed)
    print(f"catalog: {catalog.products} products, {catalog.variants} variants, "
          f"{catalog.stock_rows} stock rows in {time.perf_counter() - started:.1f} s", flush=True)
    started = time.perf_counter()
    made = reports_bench.make_orders(args)
    with connection.cursor() as cursor:
        # Distinct valid Kenyan mobile numbers (071x): the phone search has something to find.
        cursor.execute("UPDATE orders_order SET phone = '+25471' || lpad((id % 10000000)::text,"
                       " 7, '0')")
    reports_bench.analyze()
    print(f"orders: {made['orders']} with {made['lines']} lines, phones set, analyzed, in "
          f"{time.perf_counter() - started:.1f} s", flush=True)


def _pick(model, rng: random.Random, count: int, **filters) -> list:
    """``count`` distinct rows spread over the table (random ids, the next existing row)."""
    from django.db.models import Max, Min

    bounds = model.objects.aggregate(low=Min("pk"), high=Max("pk"))
    rows, seen = [], set()
    while len(rows) < count:
        start = rng.randint(bounds["low"], bounds["high"])
        row = model.objects.filter(pk__gte=start, **filters).order_by("pk").first()
        if row is not None and row.pk not in seen:
            seen.add(row.pk)
            rows.append(row)
    return rows


def searches(args: argparse.Namespace) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(label, changelist URL, [(term, the change URL that must be on the first page)])."""
    from backoffice.catalog.models import Product, Variant
    from backoffice.inventory.models import Stock
    from backoffice.orders.models import Order

    rng = random.Random(args.seed + 17)  # noqa: S311 - test data
    n = args.terms
    variant_url = "/admin/catalog/variant/"
    stock_url = "/admin/inventory/stock/"
    order_url = "/admin/orders/order/"
    product_url = "/admin/catalog/product/"

    def change(base: str, pk: int) -> str:
        return f"{base}{pk}/change/"

    def newest_variant(**filters) -> int:
        return Variant.objects.filter(**filters).order_by("-id").values_list("pk", flat=True)[0]

    def newest_order(**filters) -> int:
        return (Order.objects.filter(**filters).order_by("-created_at", "-id")
                .values_list("pk", flat=True)[0])

    variants = _pick(Variant, rng, 4 * n)
    exact = [(v.sku, change(variant_url, v.pk)) for v in variants[:n]]
    prefix, middle = [], []
    for v in variants[n:2 * n]:
        # "G1-12345-2" -> "G1-1234": that product, the ten after it and their variants.
        head, number, _position = v.sku.split("-")
        term = f"{head}-{number[:-1] or number}"
        prefix.append((term, change(variant_url, newest_variant(sku__startswith=term))))
    for v in variants[2 * n:3 * n]:
        # "G1-12345-2" -> "2345-": the middle of a SKU, found only by a contains search.
        _head, number, _position = v.sku.split("-")
        term = f"{number[1:]}-"
        middle.append((term, change(variant_url, newest_variant(sku__contains=term))))
    stock = []
    for v in variants[3 * n:]:
        row = Stock.objects.filter(variant=v).order_by("warehouse__code").first()
        stock.append((v.sku, change(stock_url, row.pk)))
    orders = _pick(Order, rng, 4 * n, id__gte=1000)  # long enough for a middle part
    by_number = [(o.number, change(order_url, o.pk)) for o in orders[:n]]
    by_email = [(o.email, change(order_url, o.pk)) for o in orders[n:2 * n]]
    fragment = []
    for o in orders[2 * n:3 * n]:
        # "c123456@example.com" -> "23456@example": a middle part.
        term = o.email[2:-4]
        fragment.append((term, change(order_url, newest_order(email__contains=term))))
    by_phone = []
    for o in orders[3 * n:]:
        local = "0" + o.phone.removeprefix("+254")  # 0712345678
        by_phone.append((f"{local[:4]} {local[4:7]} {local[7:]}", change(order_url, o.pk)))
    products = []
    for p in _pick(Product, rng, n):
        newest = (Product.objects.filter(name__icontains=p.name).order_by("-created_at", "-id")
                  .values_list("pk", flat=True)[0])
        products.append((p.name, change(product_url, newest)))
    return [
        ("variant: exact SKU", variant_url, exact),
        ("variant: SKU prefix", variant_url, prefix),
        ("variant: SKU middle", variant_url, middle),
        ("stock: exact SKU", stock_url, stock),
        ("order: number", order_url, by_number),
        ("order: email", order_url, by_email),
        ("order: email part", order_url, fragment),
        ("order: phone 0712 ...", order_url, by_phone),
        ("product: name", product_url, products),
    ]


def measure(client, url: str, terms: list[tuple[str, str]]) -> dict:
    from django.db import connection

    wall, db, queries, found, status, sql = [], [], [], 0, 200, []
    for term, must_show in terms:
        timer = reports_bench.Timer()
        with connection.execute_wrapper(timer):
            started = time.perf_counter()
            response = client.get(f"{url}?{urlencode({'q': term})}")
            wall.append((time.perf_counter() - started) * 1000)
        timing = _TIMING.search(response.get("Server-Timing", ""))
        db.append(float(timing.group(1)) if timing else float("nan"))
        queries.append(len(timer.timings))
        status = max(status, response.status_code)
        found += f'href="{must_show}' in response.content.decode()
        sql.append((wall[-1], term, timer.timings))
    return {"wall_p50": statistics.median(wall), "wall_max": max(wall),
            "db_p50": statistics.median(db), "db_max": max(db), "queries": max(queries),
            "found": found, "terms": len(terms), "status": status,
            "slowest": max(sql, key=lambda row: row[0])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--orders", type=int, default=200_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--terms", type=int, default=7, help="distinct terms per kind of search")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true",
                        help="keep the database at the end (its name is printed)")
    parser.add_argument("--reuse", metavar="NAME",
                        help=f"measure a database kept by --keep ({PREFIX}_...) again, after "
                        "migrating it: no data made")
    parser.add_argument("--show-queries", action="store_true",
                        help="print the slowest request's queries per search, slowest first")
    args = parser.parse_args()
    base_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    if not base_url.startswith(("postgres://", "postgresql://")):
        print("The admin search benchmark needs PostgreSQL: DATABASE_URL=postgres://user@host:"
              "5432/postgres (a fresh database is made there and dropped at the end).",
              file=sys.stderr)
        sys.exit(2)
    data_dir = Path(tempfile.mkdtemp(prefix="admin-search-bench-"))
    if args.reuse:
        if not args.reuse.startswith(f"{PREFIX}_"):
            parser.error(f"--reuse takes a database this benchmark made ({PREFIX}_...)")
        database = args.reuse
        database_url = urlunparse(urlparse(base_url)._replace(path=f"/{database}"))
    else:
        database, database_url = reports_bench.create_database(base_url, PREFIX)
    failed = True
    try:
        reports_bench.setup_django(database, database_url, data_dir, SERVER_TIMING="1",
                                   STORE_COUNTRY="KE")
        from cachalot.api import cachalot_disabled
        from django.conf import settings
        from django.contrib.auth import get_user_model
        from django.test import Client
        from django.test.utils import override_settings

        with cachalot_disabled():
            if args.reuse:
                reports_bench.analyze()
            else:
                seed(args)
            kinds = searches(args)
            user, _ = get_user_model().objects.get_or_create(
                username="bench", defaults={"is_staff": True, "is_superuser": True})
            client = Client()
            client.force_login(user)
            storages = {**settings.STORAGES, "staticfiles": {
                "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
            results = []
            with override_settings(STORAGES=storages):
                for url in {url for _label, url, _terms in kinds}:
                    client.get(f"{url}?q=warm-up")  # templates and the admin's first request
                for label, url, terms in kinds:
                    results.append((label, measure(client, url, terms)))
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        print(f"\nsearches as a superuser, Django test client, cachalot off; {args.terms} "
              f"distinct terms each, one request per term (budget: < {BUDGET_MS:.0f} ms); "
              f"load average {load}:")
        print(f"{'search':<22} {'p50 ms':>7} {'max ms':>7} {'db p50':>7} {'db max':>7} "
              f"{'queries':>7} {'found':>6}  verdict")
        failed = False
        for label, row in results:
            ok = (row["status"] == 200 and row["wall_max"] < BUDGET_MS
                  and row["found"] == row["terms"])
            failed |= not ok
            print(f"{label:<22} {row['wall_p50']:>7.1f} {row['wall_max']:>7.1f} "
                  f"{row['db_p50']:>7.1f} {row['db_max']:>7.1f} {row['queries']:>7} "
                  f"{row['found']:>3}/{row['terms']:<2}  {'PASS' if ok else 'FAIL'}")
            if args.show_queries:
                wall_ms, term, timings = row["slowest"]
                print(f"{'':<4}slowest: {term!r} in {wall_ms:.1f} ms")
                for ms, sql in sorted(timings, key=lambda pair: -pair[0]):
                    print(f"{'':<8}{ms:8.2f} ms  {' '.join(sql.split())[:240]}")
        print("\nverdict: " + ("PASS, every search under budget" if not failed
                               else "FAIL, some search over budget or missing its row"))
    finally:
        reports_bench.tear_down(base_url, database, data_dir, keep=(
            f" (--reuse {database} measures it again)" if args.keep or args.reuse else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
