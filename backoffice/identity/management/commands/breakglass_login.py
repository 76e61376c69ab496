"""Print a one-time link that lets a superuser into the admin without a password or a provider
(single sign-on down, ``STAFF_PASSWORD_LOGIN`` off). Valid for 10 minutes, once."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from backoffice.identity import breakglass


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--base-url", default=settings.PUBLIC_URL,
                            help="The back office's address (default: PUBLIC_URL).")

    def handle(self, *args, username, base_url, **options):
        user = get_user_model().objects.filter(username=username).first()
        if user is None or not (user.is_active and user.is_superuser):
            raise CommandError(f"{username!r} is not an active superuser "
                               "(createsuperuser makes one).")
        path = reverse("sso-breakglass", args=[breakglass.make_token(user)])
        self.stdout.write(f"{base_url.rstrip('/')}{path}")
        self.stderr.write(f"One use, within {breakglass.TTL // 60} minutes. Every use is "
                          "written to the audit trail.")
