import time

from django.core.management.base import BaseCommand

from backoffice.catalog import documents


class Command(BaseCommand):
    help = (
        "Build every product's kept storefront answers (listing item and detail JSON) from the "
        "live rows. Writes make them stale and reads rebuild them one by one; run this after "
        "changing the media storage's URLs, or to warm a shop before traffic. The nightly job "
        "does the same."
    )

    def handle(self, *args, **options) -> None:
        started = time.perf_counter()
        built = documents.rebuild_all()
        self.stdout.write(self.style.SUCCESS(
            f"Kept the storefront answers of {built} products in "
            f"{time.perf_counter() - started:.1f} s."
        ))
