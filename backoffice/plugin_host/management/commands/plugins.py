from django.core.management.base import BaseCommand
from django.db import DatabaseError

from backoffice.hookspecs import HOOKSPEC_VERSION
from backoffice.plugin_host.loading import ENTRY_POINT_GROUP, get_plugin_host


class Command(BaseCommand):
    help = "List the installed plugins: version, active, hooks implemented, missing settings."

    def handle(self, *args, **options) -> None:
        host = get_plugin_host()
        try:
            active = host.active_names()
        except DatabaseError:
            active = set()
            self.stderr.write("The database is not migrated: active state unknown.")
        self.stdout.write(
            f"Hook specs {HOOKSPEC_VERSION}; plugins from entry-point group {ENTRY_POINT_GROUP!r}"
        )
        for name, plugin in sorted(host.plugins.items()):
            state = "active" if name in active else "inactive"
            self.stdout.write(
                self.style.SUCCESS(f"\n{name}") + f" {plugin.version} ({state})"
                f" - {plugin.label}"
            )
            self.stdout.write(
                f"  from:  {plugin.distribution or '?'}; supports {plugin.hookspec_version}"
            )
            self.stdout.write(f"  hooks: {', '.join(plugin.hooks) or '-'}")
            try:
                resolved = host.config(name)
            except DatabaseError:
                continue
            for field_ in plugin.config_fields:
                source = resolved.sources[field_.name]
                shown = "***" if field_.is_secret and source != "missing" else (
                    resolved.values[field_.name] if source != "missing" else "MISSING"
                )
                error = resolved.errors.get(field_.name, "")
                self.stdout.write(
                    f"  {field_.name:<20} {shown!s:<24} ({source}; env {field_.env_name(name)})"
                    + (self.style.ERROR(f" invalid: {error}") if error else "")
                )
        for name, reason in sorted(host.refused.items()):
            self.stdout.write(self.style.ERROR(f"\n{name} REFUSED: {reason}"))
