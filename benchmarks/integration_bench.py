"""Integration API benchmark: an ERP pushing its catalog through POST /integrations/products.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres make bench-integrations
    BENCH_ARGS="--variants 20000" make bench-integrations      # a smaller run

It needs PostgreSQL. It makes a fresh database ``bench_integrations_<pid>`` on that server,
migrates it and drops it at the end, whatever happens (``--keep`` keeps it).

What it does, in-process through Django's test client (the whole Django stack: middleware, the
API key's authentication, JSON parsing and validation, the import engine, the database; no HTTP
server and no network, so a gunicorn deployment adds its own parsing and socket time on top):

1. pushes ``--variants`` variants as products of ``--per-product`` variants each, in batches of
   ``--batch`` products (500, the endpoint's most) with an API key (``catalog:write``): new
   products with a description, a brand, a category path out of 60 (made on first use), tags,
   an image URL, sizes as options, decimal-string prices and stock in the default warehouse.
   Prints upserts (products) and variants per second, seconds per batch (p50 and max) and SQL
   queries per batch (``CaptureQueriesContext``), and the verdict against the goal: 100k
   variants in under a minute (for a smaller run, the 100k time at the measured rate);
2. sends the first ``--resend`` batches again unchanged (the idempotent path an ERP's nightly
   full push takes: nothing written), and then with every price changed;
3. reads the whole catalog back with ``GET /integrations/products`` (keyset cursor,
   ``--page`` products a page): pages p50/max and queries a page.

The query cache (cachalot) is off for the read-back, as on the database path. It prints numbers;
it is not a test (tests/test_api_integration_catalog.py is). It exits non-zero on FAIL or on an
answer other than 200.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import reports_bench  # benchmarks/ is on the path: this file runs as a script from there

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PREFIX = "bench_integrations"
GOAL_VARIANTS, GOAL_SECONDS = 100_000, 60.0
SIZES = ["XS", "S", "M", "L", "XL", "XXL", "3XL", "4XL"]
BRANDS = ["Savanna", "Kilima", "Pwani", "Rift", "Baobab", "Maasai Mara"]


def _categories() -> list[str]:
    tops = ["Clothing", "Home", "Garden", "Kitchen", "Sports", "Toys"]
    middles = ["Men", "Women", "Kids", "Outdoor", "Classic"]
    leaves = ["Shirts", "Trousers"]
    return [f"{t} > {m} > {leaf}" for t in tops for m in middles for leaf in leaves]


def make_batches(args: argparse.Namespace, *, price_shift: int = 0) -> list[list[dict]]:
    rng = random.Random(args.seed)  # noqa: S311 - test data
    categories = _categories()
    products = args.variants // args.per_product
    batches, batch = [], []
    for n in range(products):
        sizes = SIZES[:args.per_product]
        base = rng.randint(300, 9000)
        batch.append({
            "handle": f"erp-{n:07d}", "name": f"Product {n}",
            "description": f"Product {n}, pushed by the benchmark's ERP. " * 3,
            "brand": BRANDS[n % len(BRANDS)], "product_type": "Apparel",
            "category": categories[n % len(categories)], "tags": ["erp", f"t{n % 50}"],
            "published": n % 10 != 0,
            "images": [{"url": f"https://cdn.example.com/erp/{n}.jpg", "alt": f"Product {n}"}],
            "variants": [{
                "sku": f"ERP-{n:07d}-{size}", "name": size, "options": {"Size": size},
                "price": f"{base + price_shift + i * 50}.{rng.randint(0, 99):02d}",
                "barcode": f"{n:07d}{i:02d}", "weight_grams": 250,
                "stock": {"main": rng.randint(0, 40)},
            } for i, size in enumerate(sizes)],
        })
        if len(batch) == args.batch:
            batches.append(batch)
            batch = []
    if batch:
        batches.append(batch)
    return batches


def push(client, key: str, batches: list[list[dict]], label: str) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    seconds, queries, counts = [], [], {}
    started = time.perf_counter()
    for i, batch in enumerate(batches):
        body = json.dumps({"products": batch, "reference": f"bench {label} {i}"})
        with CaptureQueriesContext(connection) as captured:
            t0 = time.perf_counter()
            response = client.post("/api/v1/integrations/products", body,
                                   content_type="application/json", HTTP_X_API_KEY=key)
            seconds.append(time.perf_counter() - t0)
        if response.status_code != 200:
            raise SystemExit(f"{label} batch {i}: {response.status_code} {response.content[:500]}")
        queries.append(len(captured))
        for entity, actions in response.json()["counts"].items():
            for action, n in actions.items():
                counts[f"{entity} {action}"] = counts.get(f"{entity} {action}", 0) + n
    return {"total": time.perf_counter() - started, "seconds": seconds, "queries": queries,
            "products": sum(len(b) for b in batches),
            "variants": sum(len(p["variants"]) for b in batches for p in b), "counts": counts}


def report(label: str, run: dict) -> None:
    s = run["seconds"]
    print(f"\n{label}: {len(s)} batches, {run['products']:,} products, {run['variants']:,} "
          f"variants in {run['total']:.1f} s")
    print(f"  upserts/s (products): {run['products'] / run['total']:,.0f}   variants/s: "
          f"{run['variants'] / run['total']:,.0f}")
    print(f"  s per batch: p50 {statistics.median(s):.2f}  max {max(s):.2f}   queries per "
          f"batch: p50 {statistics.median(run['queries']):.0f}  max {max(run['queries'])}")
    print("  engine counts: " + ", ".join(f"{k} {v:,}" for k, v in sorted(run["counts"].items())))


def read_back(client, key: str, page: int) -> dict:
    from cachalot.api import cachalot_disabled
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    seconds, queries, seen, cursor = [], [], 0, None
    started = time.perf_counter()
    with cachalot_disabled():
        while True:
            params = {"limit": page, **({"cursor": cursor} if cursor else {})}
            with CaptureQueriesContext(connection) as captured:
                t0 = time.perf_counter()
                response = client.get("/api/v1/integrations/products", params,
                                      HTTP_X_API_KEY=key)
                seconds.append(time.perf_counter() - t0)
            if response.status_code != 200:
                raise SystemExit(f"read-back: {response.status_code} {response.content[:500]}")
            queries.append(len(captured))
            body = response.json()
            seen += len(body["items"])
            cursor = body["next_cursor"]
            if cursor is None:
                break
    return {"total": time.perf_counter() - started, "seconds": seconds, "queries": queries,
            "products": seen}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", type=int, default=GOAL_VARIANTS)
    parser.add_argument("--per-product", type=int, default=2, choices=range(1, len(SIZES) + 1))
    parser.add_argument("--batch", type=int, default=500, help="products a request (<= 500)")
    parser.add_argument("--resend", type=int, default=10,
                        help="batches sent again, unchanged and then with new prices")
    parser.add_argument("--page", type=int, default=500, help="products a read-back page")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the database at the end")
    args = parser.parse_args()
    if not 1 <= args.batch <= 500:
        parser.error("--batch takes 1 to 500 (the endpoint's limit)")
    base_url = os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres")
    if not base_url.startswith(("postgres://", "postgresql://")):
        print("The integration benchmark needs PostgreSQL: DATABASE_URL=postgres://user@host:"
              "5432/postgres (a fresh database is made there and dropped at the end).",
              file=sys.stderr)
        sys.exit(2)
    data_dir = Path(tempfile.mkdtemp(prefix="integration-bench-"))
    database, database_url = reports_bench.create_database(base_url, PREFIX)
    failed = True
    try:
        reports_bench.setup_django(database, database_url, data_dir)
        from django.test import Client

        from backoffice.integrations.models import Scope
        from backoffice.integrations.services import create_api_key

        _, key = create_api_key(name="bench ERP", scopes=[Scope.CATALOG_WRITE])
        client = Client()
        batches = make_batches(args)
        print(f"payload: {len(batches)} batches of up to {args.batch} products, "
              f"{args.per_product} variants each; Django test client in-process", flush=True)

        created = push(client, key, batches, "create")
        report("create (new products)", created)
        again = push(client, key, batches[:args.resend], "resend")
        report(f"resend unchanged (first {args.resend} batches)", again)
        repriced = push(client, key, make_batches(args, price_shift=7)[:args.resend], "reprice")
        report(f"resend with new prices (first {args.resend} batches)", repriced)
        reports_bench.analyze()
        read = read_back(client, key, args.page)
        s = read["seconds"]
        print(f"\nread-back (GET /integrations/products, cursor, {args.page} a page, cachalot "
              f"off): {read['products']:,} products in {len(s)} pages, {read['total']:.1f} s; "
              f"s per page p50 {statistics.median(s):.3f} max {max(s):.3f}; queries per page "
              f"{min(read['queries'])}-{max(read['queries'])}")

        rate = created["variants"] / created["total"]
        projected = GOAL_VARIANTS / rate
        measured = "measured" if created["variants"] >= GOAL_VARIANTS else "projected"
        ok = projected < GOAL_SECONDS and read["products"] == created["products"]
        failed = not ok
        print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"verdict: {'PASS' if ok else 'FAIL'}: {created['variants']:,} variants in "
              f"{created['total']:.1f} s ({rate:,.0f} variants/s); 100k variants {measured}: "
              f"{projected:.1f} s (goal: under {GOAL_SECONDS:.0f} s)")
    finally:
        reports_bench.tear_down(base_url, database, data_dir, keep=" (--keep)" if args.keep else "")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
