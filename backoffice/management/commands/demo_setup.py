from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from backoffice.demo import ensure_demo_login, load_demo_data


class Command(BaseCommand):
    help = "Create the demo staff login and load the demo data (development only; idempotent)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--allow-production",
            action="store_true",
            help="Run even with DEBUG off. A known superuser password is a hole in a live store.",
        )
        parser.add_argument("--addr", default="127.0.0.1:8000", help="Where the server listens.")

    def handle(self, *args, **options) -> None:
        if not settings.DEBUG and not options["allow_production"]:
            raise CommandError(
                "demo_setup creates a superuser with a known password; it runs only with DEBUG=1 "
                "(or --allow-production)."
            )
        # whitenoise serves STATIC_ROOT and warns when it does not exist yet.
        settings.STATIC_ROOT.mkdir(parents=True, exist_ok=True)
        for summary in load_demo_data():
            self.stdout.write(f"  {summary}")
        login = ensure_demo_login()
        base = f"http://{options['addr']}"
        self.stdout.write(
            self.style.SUCCESS(
                f"\n  Back office: {base}/admin/\n"
                f"  Login:       {login.username} / {login.password}\n"
                f"  API docs:    {base}/api/v1/docs\n"
            )
        )
