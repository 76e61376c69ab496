import time

from django.core.management.base import BaseCommand, CommandError

from backoffice.catalog.demo import generate_catalog


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
        elapsed = time.perf_counter() - started
        self.stdout.write(self.style.SUCCESS(f"Generated {generated} in {elapsed:.1f} s."))
