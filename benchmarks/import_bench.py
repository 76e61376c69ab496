"""Import benchmark: 100k Shopify variant rows into an empty catalog, ours vs django-import-export.

    make bench                                    # SQLite (a fresh temporary file)
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres make bench
                                                  # PostgreSQL: a fresh database bench_<pid> on
                                                  # that server, dropped at the end

What it does, each import in its own forked process so peak RSS is per import:

1. writes a synthetic Shopify product CSV (default 25,000 products x 4 variants = 100,000 rows,
   images on every product's first row and a variant image on every other row, 336 category
   paths three levels deep) into a temporary directory, and migrates a fresh database;
2. imports it with our engine (``import_catalog --format shopify``: products, variants,
   categories, images and stock with movements), and prints rows/s, seconds, peak RSS, queries;
3. deletes the variants and imports the same rows with a plain django-import-export
   ``ModelResource`` for ``Variant`` (product by slug through ``CachedForeignKeyWidget``,
   ``use_bulk=True``, ``skip_diff=True``, ``force_init_instance=True``, ``batch_size=1000``: the
   library's tuned path), and prints the same numbers and the ratio. It writes variants only (no
   products, categories, images or stock), so the comparison flatters the baseline;
4. imports a synthetic 5,500-node Google taxonomy file and prints its seconds.

It prints numbers; it is not a test. Budget (DESIGN.md): 100k rows under 15 s, at least 3x the
library, under 400 MB, on PostgreSQL.
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import secrets
import shutil
import sys
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHOPIFY_HEADER = [
    "Handle", "Title", "Body (HTML)", "Vendor", "Product Category", "Type", "Tags", "Published",
    "Option1 Name", "Option1 Value", "Option2 Name", "Option2 Value", "Option3 Name",
    "Option3 Value", "Variant SKU", "Variant Grams", "Variant Inventory Tracker",
    "Variant Inventory Qty", "Variant Inventory Policy", "Variant Fulfillment Service",
    "Variant Price", "Variant Compare At Price", "Variant Requires Shipping", "Variant Taxable",
    "Variant Barcode", "Image Src", "Image Position", "Image Alt Text", "Gift Card", "SEO Title",
    "SEO Description", "Google Shopping / Google Product Category", "Variant Image",
    "Variant Weight Unit", "Cost per item", "Status",
]
SIZES = ["S", "M", "L", "XL", "XXL", "3XL"]
COLOURS = ["Black", "White", "Navy", "Olive", "Sand", "Red"]


def write_shopify_csv(path: Path, products: int, variants_per_product: int) -> int:
    roots = [f"Department {i}" for i in range(6)]
    paths = [
        f"{root} > Aisle {j} > Shelf {k}" for root in roots for j in range(7) for k in range(8)
    ]
    rows = 0
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(SHOPIFY_HEADER)
        blank = dict.fromkeys(SHOPIFY_HEADER, "")
        for p in range(products):
            handle = f"product-{p}"
            for v in range(variants_per_product):
                row = dict(blank)
                row["Handle"] = handle
                if v == 0:
                    row.update({
                        "Title": f"Product {p}",
                        "Body (HTML)": f"<p>Synthetic product {p} for the import benchmark.</p>",
                        "Vendor": f"Brand {p % 50}",
                        "Product Category": paths[p % len(paths)],
                        "Type": "Apparel",
                        "Tags": f"tag{p % 10}, bench",
                        "Published": "TRUE",
                        "Option1 Name": "Size",
                        "Option2 Name": "Colour",
                        "Image Src": f"https://cdn.example.test/p/{p}.jpg",
                        "Image Position": "1",
                        "Image Alt Text": f"Product {p}",
                        "SEO Title": f"Product {p}",
                        "Google Shopping / Google Product Category": str(1000 + p % 300),
                        "Status": "active",
                    })
                row.update({
                    "Option1 Value": SIZES[v % len(SIZES)],
                    "Option2 Value": COLOURS[(p + v) % len(COLOURS)],
                    "Variant SKU": f"SKU-{p}-{v}",
                    "Variant Grams": str(100 + v * 10),
                    "Variant Inventory Tracker": "shopify",  # tracked, as Shopify exports it
                    "Variant Inventory Qty": str((p + v) % 40),
                    "Variant Inventory Policy": "deny",
                    "Variant Price": f"{10 + p % 90}.{v * 25 % 100:02d}",
                    "Variant Compare At Price": f"{120 + p % 90}.00" if v % 3 == 0 else "",
                    "Variant Barcode": f"{400000000000 + p * 10 + v}",
                    "Variant Weight Unit": "g",
                    "Cost per item": f"{5 + p % 40}.50",
                })
                if v % 2 == 1:
                    row["Variant Image"] = f"https://cdn.example.test/p/{p}-{v}.jpg"
                writer.writerow(row.values())
                rows += 1
    return rows


def write_taxonomy(path: Path, nodes: int = 5500) -> int:
    lines = ["# Google_Product_Taxonomy_Version: synthetic"]
    next_id = 1
    frontier: list[str] = []
    for r in range(21):
        lines.append(f"{next_id} - Synthetic {r}")
        frontier.append(f"Synthetic {r}")
        next_id += 1
    while next_id <= nodes:
        new_frontier = []
        for parent in frontier:
            for c in range(6):
                if next_id > nodes:
                    break
                name = f"{parent} > Node {next_id}-{c}"
                lines.append(f"{next_id} - {name}")
                new_frontier.append(name)
                next_id += 1
        frontier = new_frontier
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return nodes


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _in_child(target, *args) -> dict:
    """Run ``target`` in a forked process; peak RSS is then that import's own."""
    from django.db import connections

    connections.close_all()
    context = get_context("fork")
    parent_end, child_end = context.Pipe(duplex=False)

    def wrapper() -> None:
        from django.db import connection

        queries = [0]

        def count(execute, sql, params, many, ctx):
            queries[0] += 1
            return execute(sql, params, many, ctx)

        try:
            with connection.execute_wrapper(count):
                stats = target(*args)
            stats.update(queries=queries[0], peak_rss_mb=round(peak_rss_mb(), 1))
        except Exception as exc:  # report, don't hang the parent
            stats = {"error": f"{type(exc).__name__}: {exc}"}
        child_end.send(stats)

    process = context.Process(target=wrapper)
    process.start()
    stats = parent_end.recv()
    process.join()
    return stats


def ours(path: Path, profile: bool = False) -> dict:
    from backoffice.imports.services import import_catalog

    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.perf_counter()
    with path.open("rb") as stream:
        result = import_catalog(stream=stream, filename=path.name, file_format="shopify")
    seconds = time.perf_counter() - started
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
    if result.errors:
        raise RuntimeError(f"{len(result.errors)} errors, first: {result.errors[0]}")
    return {"rows": result.rows, "seconds": seconds, "timings": result.timings}


def baseline(path: Path) -> dict:
    import tablib
    from import_export import fields, resources, widgets

    from backoffice.catalog.models import Variant

    class VariantResource(resources.ModelResource):
        product = fields.Field(
            attribute="product", column_name="product",
            widget=widgets.CachedForeignKeyWidget(Variant.product.field.related_model, "slug"),
        )

        class Meta:
            model = Variant
            fields = ("sku", "product", "name", "price", "compare_at_price", "cost_price",
                      "barcode", "weight_grams")
            import_id_fields = ("sku",)
            use_bulk = True
            batch_size = 1000
            skip_diff = True
            force_init_instance = True

    # The library takes a tablib Dataset: the Shopify rows, handle filled down, as its columns.
    dataset = tablib.Dataset(
        headers=["sku", "product", "name", "price", "compare_at_price", "cost_price", "barcode",
                 "weight_grams"]
    )
    with path.open(newline="", encoding="utf-8") as stream:
        for row in csv.DictReader(stream):
            dataset.append([
                row["Variant SKU"], row["Handle"],
                f"{row['Option1 Value']} / {row['Option2 Value']}",
                row["Variant Price"], row["Variant Compare At Price"] or None,
                row["Cost per item"] or None, row["Variant Barcode"], row["Variant Grams"],
            ])
    started = time.perf_counter()
    result = VariantResource().import_data(dataset, dry_run=False, raise_errors=True)
    seconds = time.perf_counter() - started
    if result.has_errors() or result.has_validation_errors():
        raise RuntimeError("django-import-export reported errors")
    return {"rows": len(dataset), "seconds": seconds, "variants": Variant.objects.count()}


def taxonomy(path: Path) -> dict:
    from backoffice.imports.services import import_catalog

    started = time.perf_counter()
    with path.open("rb") as stream:
        result = import_catalog(stream=stream, filename=path.name, file_format="google-taxonomy")
    if result.errors:
        raise RuntimeError(f"taxonomy errors, first: {result.errors[0]}")
    return {"rows": result.rows, "seconds": time.perf_counter() - started}


def clear_variants() -> None:
    from django.db import connection

    from backoffice.catalog.models import Variant
    from backoffice.inventory.models import Stock, StockMovement

    with connection.cursor() as cursor:
        for model in (StockMovement, Stock, Variant):
            cursor.execute(f"DELETE FROM {model._meta.db_table}")  # noqa: S608 - our tables


def report(name: str, stats: dict) -> None:
    if "error" in stats:
        print(f"{name:<28} FAILED: {stats['error']}")
        return
    rate = stats["rows"] / stats["seconds"] if stats["seconds"] else 0
    print(
        f"{name:<28} {stats['rows']:>7} rows  {stats['seconds']:7.2f} s  {rate:9.0f} rows/s  "
        f"peak RSS {stats['peak_rss_mb']:6.1f} MB  {stats['queries']:>6} queries"
    )
    if stats.get("timings"):
        phases = ", ".join(f"{phase} {t:.1f} s" for phase, t in stats["timings"].items())
        print(f"{'':<28} phases: {phases}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--products", type=int, default=25_000)
    parser.add_argument("--variants", type=int, default=4, help="variants per product")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--profile", action="store_true",
                        help="print where our import spends its time (cProfile, slower)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="import-bench-"))
    base_url = os.environ.get("DATABASE_URL", "")
    bench_db = None
    if base_url.startswith(("postgres://", "postgresql://")):
        import psycopg

        bench_db = f"bench_{os.getpid()}"
        with psycopg.connect(base_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{bench_db}"')
        database_url = urlunparse(urlparse(base_url)._replace(path=f"/{bench_db}"))
    else:
        database_url = f"sqlite:///{workdir / 'bench.sqlite3'}"
    os.environ.update({
        "DATABASE_URL": database_url,
        "DEBUG": "0",  # DEBUG would keep every query in memory
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DATA_DIR": str(workdir),
        "LOG_LEVEL": "WARNING",
        "LOG_FORMAT": "console",
    })
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backoffice.settings")
    try:
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection

        csv_path = workdir / "shopify.csv"
        started = time.perf_counter()
        rows = write_shopify_csv(csv_path, args.products, args.variants)
        print(
            f"generated {rows} Shopify rows ({csv_path.stat().st_size / 1e6:.1f} MB) in "
            f"{time.perf_counter() - started:.1f} s"
        )
        call_command("migrate", verbosity=0)
        print(f"database: {connection.vendor} ({database_url.rsplit('@', 1)[-1]}), migrated")

        mine = _in_child(ours, csv_path, args.profile)
        report("ours (shopify, everything)", mine)
        if not args.skip_baseline:
            clear_variants()
            theirs = _in_child(baseline, csv_path)
            report("django-import-export tuned", theirs)
            if "error" not in mine and "error" not in theirs:
                ratio = (mine["rows"] / mine["seconds"]) / (theirs["rows"] / theirs["seconds"])
                print(f"ratio (ours / django-import-export rows per second): {ratio:.1f}x")
        taxonomy_path = workdir / "taxonomy-with-ids.synthetic.txt"
        write_taxonomy(taxonomy_path)
        report("google taxonomy (5,500)", _in_child(taxonomy, taxonomy_path))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if bench_db:
            from django.db import connections

            connections.close_all()
            import psycopg

            with psycopg.connect(base_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{bench_db}" WITH (FORCE)')


if __name__ == "__main__":
    main()
