"""Plugins are found by entry point, checked, and refused with a reason when they don't fit."""

import textwrap
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from backoffice.hookspecs import HOOKSPEC_VERSION, hookimpl
from backoffice.plugin_host import checks
from backoffice.plugin_host import loading as loading_module
from backoffice.plugin_host.errors import PluginLoadError
from backoffice.plugin_host.loading import ENTRY_POINT_GROUP, PluginHost, get_plugin_host


def install_fake_distribution(tmp_path, monkeypatch, name: str, source: str) -> None:
    """Put a real installed distribution on sys.path: a module and a dist-info entry point."""
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    dist_info = tmp_path / f"{name}-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{name} = {name}\n")
    monkeypatch.syspath_prepend(str(tmp_path))


def test_bundled_and_third_party_plugins_are_found_by_entry_point():
    host = PluginHost()
    host.load_entry_points()
    assert {"flat_rate_shipping", "manual_payment", "webhook_notifier"} <= set(host.plugins)
    assert host.plugins["manual_payment"].distribution == "backoffice"
    notifier = host.plugins["webhook_notifier"]
    assert notifier.distribution == "backoffice-webhook-notifier"
    assert notifier.version == "1.1.0"
    assert "order_placed" in notifier.hooks
    assert host.refused == {}


def test_the_allow_list_loads_only_what_it_names():
    host = PluginHost()
    host.load_entry_points(allow=["manual_payment"])
    assert set(host.plugins) == {"manual_payment"}


def test_the_block_list_keeps_a_plugin_out():
    host = PluginHost()
    host.load_entry_points(block=["webhook_notifier"])
    assert "webhook_notifier" not in host.plugins
    assert "manual_payment" in host.plugins


def test_the_settings_lists_drive_the_process_wide_host(settings):
    settings.PLUGINS_BLOCK = ["flat_rate_shipping"]
    loading_module.reset_plugin_host()
    try:
        assert "flat_rate_shipping" not in get_plugin_host().plugins
    finally:
        loading_module.reset_plugin_host()


def test_an_incompatible_plugin_is_refused_with_a_clear_message(tmp_path, monkeypatch):
    install_fake_distribution(tmp_path, monkeypatch, "future_plugin", """
        from backoffice.hookspecs import hookimpl
        hookspec_version = ">=2.0,<3"

        @hookimpl
        def order_placed(order_id):
            pass
    """)
    host = PluginHost()
    host.load_entry_points()
    assert "future_plugin" not in host.plugins
    reason = host.refused["future_plugin"]
    assert ">=2.0,<3" in reason and HOOKSPEC_VERSION in reason
    # The bundled plugins load all the same.
    assert "manual_payment" in host.plugins


@pytest.mark.django_db
def test_a_refused_plugin_is_a_system_check_warning_and_the_admin_says_why(
    tmp_path, monkeypatch, staff_client
):
    install_fake_distribution(tmp_path, monkeypatch, "typo_plugin", """
        from backoffice.hookspecs import hookimpl
        hookspec_version = ">=1.0,<2"

        @hookimpl
        def order_placd(order_id):
            pass
    """)
    host = PluginHost()
    host.load_entry_points()
    assert "order_placd" in host.refused["typo_plugin"]
    # Nothing of the refused plugin stays registered with pluggy.
    assert "typo_plugin" not in dict(host.pm.list_name_plugin())
    monkeypatch.setattr(loading_module, "_host", host)
    problems = checks.check_refused_plugins(None)
    assert [(p.id, p.obj) for p in problems] == [("backoffice.W102", "typo_plugin")]
    # A warning: it does not stop `migrate` or `runserver`.
    assert not any(p.is_serious() for p in problems)
    page = staff_client.get(reverse("admin:plugins_pluginconfig_changelist")).content.decode()
    assert "typo_plugin was not loaded" in page and "order_placd" in page


def test_a_plugin_that_fails_to_import_is_refused_alone(tmp_path, monkeypatch):
    install_fake_distribution(tmp_path, monkeypatch, "broken_plugin", "import no_such_module\n")
    host = PluginHost()
    host.load_entry_points()
    assert "ModuleNotFoundError" in host.refused["broken_plugin"]
    assert "manual_payment" in host.plugins


def test_a_plugin_must_declare_its_hookspec_version():
    class Plugin:
        @hookimpl
        def order_placed(self, order_id):
            pass

    with pytest.raises(PluginLoadError, match="hookspec_version"):
        PluginHost().register(Plugin(), "undeclared")


def test_a_plugin_with_an_extra_argument_is_refused():
    class Plugin:
        hookspec_version = ">=1.0,<2"

        @hookimpl
        def order_placed(self, order_id, coupon_code):
            pass

    with pytest.raises(PluginLoadError, match="coupon_code"):
        PluginHost().register(Plugin(), "extra_argument")


@pytest.mark.django_db
def test_the_plugins_command_lists_versions_hooks_and_missing_settings():
    out = StringIO()
    call_command("plugins", stdout=out)
    text = out.getvalue()
    assert "webhook_notifier 1.1.0 (inactive)" in text
    assert "hooks: order_placed" in text
    assert "MISSING" in text and "WEBHOOK_NOTIFIER_URL" in text
    assert "flat_rate_shipping" in text and "manual_payment" in text
