"""Re-encrypt every stored plugin secret with the first key of SECRETS_ENCRYPTION_KEYS."""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from backoffice import crypto
from backoffice.plugin_host.loading import get_plugin_host
from backoffice.plugin_host.models import PluginConfig


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored plugin secret with the first key of SECRETS_ENCRYPTION_KEYS "
        "(and encrypt the plain ones of installed plugins). Run it after putting a new key "
        "first; then the old key can be removed."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true",
            help="Check that every secret can be re-encrypted; change nothing.",
        )

    def handle(self, *args, dry_run: bool = False, **options) -> None:
        problems = crypto.key_problems()
        if problems:
            raise CommandError("; ".join(problems))
        host = get_plugin_host()
        rotated = encrypted = 0
        failed: list[str] = []
        with transaction.atomic():
            for row in PluginConfig.objects.select_for_update().order_by("identifier"):
                plugin = host.plugins.get(row.identifier)
                secret = {f.name for f in plugin.config_fields if f.is_secret} if plugin else set()
                settings = dict(row.settings or {})
                changed = False
                for name, value in sorted(settings.items()):
                    plain = name in secret and value not in (None, "") and not crypto.is_sealed(
                        value
                    )
                    if not (crypto.is_sealed(value) or plain):
                        continue
                    try:
                        settings[name] = crypto.reseal(value)
                    except crypto.DecryptionError as exc:
                        # The plugin and the setting, never the value.
                        failed.append(f"plugin {row.identifier!r}, setting {name!r}: {exc}")
                        continue
                    changed = True
                    if plain:
                        encrypted += 1
                    else:
                        rotated += 1
                if changed and not dry_run:
                    row.settings = settings
                    row.save(update_fields=["settings"])
        verb = "Would re-encrypt" if dry_run else "Re-encrypted"
        self.stdout.write(
            f"{verb} {rotated} stored secret(s) with the first key; "
            f"{'would encrypt' if dry_run else 'encrypted'} {encrypted} plain one(s)."
        )
        if failed:
            raise CommandError(
                f"{len(failed)} stored secret(s) cannot be decrypted with the configured keys "
                "and were left as they are (add the key they were encrypted with to "
                "SECRETS_ENCRYPTION_KEYS, or enter them again in the admin):\n  "
                + "\n  ".join(failed)
            )
