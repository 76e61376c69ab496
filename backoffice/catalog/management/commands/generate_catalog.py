import time

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from backoffice.catalog import documents
from backoffice.catalog.demo import generate_catalog
from backoffice.catalog.models import Category, Product, Variant
from backoffice.inventory.models import Stock


class Command(BaseCommand):
    help = (
        "Add a synthetic catalog (products with 1-6 variants, stock in two warehouses) for "
        "benchmarks and load tests. Deterministic for a given --seed."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--products", type=int, default=1000, help="How many products.")
        parser.add_argument("--seed", type=int, default=1, help="Random seed.")
        parser.add_argument(
            "--sku-prefix", default=None, help="SKU and slug prefix (default G<seed>)."
        )
        parser.add_argument("--batch-size", type=int, default=1000)

    def handle(self, *args, **options) -> None:
        if options["products"] < 1:
            raise CommandError("--products must be at least 1.")
        started = time.perf_counter()
        try:
            generated = generate_catalog(
                options["products"],
                options["seed"],
                sku_prefix=options["sku_prefix"],
                batch_size=options["batch_size"],
            )
        except ValueError as error:
            raise CommandError(str(error)) from None
        if connection.vendor == "postgresql":
            # Fresh statistics and visibility maps: until autovacuum comes by, the planner
            # guesses the sizes of tables that just grew by 100k rows and index-only scans read
            # the heap (measured on 100k products: a listing miss spent 102 ms in the database,
            # 3 ms after VACUUM ANALYZE). VACUUM cannot run inside a transaction (tests).
            command = "ANALYZE" if connection.in_atomic_block else "VACUUM (ANALYZE)"
            with connection.cursor() as cursor:
                for model in (Category, Product, Variant, Stock):
                    table = connection.ops.quote_name(model._meta.db_table)
                    cursor.execute(f"{command} {table}")
        elapsed = time.perf_counter() - started
        self.stdout.write(self.style.SUCCESS(f"Generated {generated} in {elapsed:.1f} s."))
        # What a shop that has been browsed (or the nightly job) has: every product's kept
        # storefront answer, so that the first view of each does not pay for building it.
        started = time.perf_counter()
        built = documents.rebuild_all()
        self.stdout.write(f"Kept the storefront answers of {built} products in "
                          f"{time.perf_counter() - started:.1f} s.")
