"""Plugin settings: declared fields, validated, secrets write-only, the environment wins."""

from decimal import Decimal

import pytest

from backoffice import crypto
from backoffice.hookspecs import hookimpl
from backoffice.plugin_host.config import ConfigField, resolve_config, sync_plugin_configs
from backoffice.plugin_host.errors import PluginConfigError
from backoffice.plugin_host.models import PluginConfig
from backoffice.plugin_host.services import update_plugin_config

pytestmark = pytest.mark.django_db

FIELDS = [
    ConfigField("api_key", "API key", kind="secret", required=True),
    ConfigField("rate", "Rate", kind="decimal", default="5.00"),
    ConfigField("sandbox", "Sandbox", kind="bool", default=True),
    ConfigField("mode", "Mode", kind="choice", choices=[("a", "A"), ("b", "B")]),
]


class ConfiguredPlugin:
    """A plugin with settings of every kind that matters here."""

    hookspec_version = ">=1.0,<2"
    config_fields = FIELDS

    @hookimpl
    def order_placed(self, order_id):
        pass


def test_the_environment_wins_over_the_admin_and_the_default():
    resolved = resolve_config(
        "acme", FIELDS, stored={"api_key": "from-admin", "rate": "7.50"},
        environ={"ACME_API_KEY": "from-env"},
    )
    assert resolved.values == {
        "api_key": "from-env", "rate": Decimal("7.50"), "sandbox": True, "mode": None,
    }
    assert resolved.sources == {
        "api_key": "env", "rate": "admin", "sandbox": "default", "mode": "default",
    }
    assert resolved.is_complete


def test_missing_required_and_invalid_values_are_reported():
    resolved = resolve_config("acme", FIELDS, stored={"rate": "cheap", "mode": "z"}, environ={})
    assert resolved.missing == ["api_key"]
    assert set(resolved.errors) == {"rate", "mode"}
    assert not resolved.is_complete


def test_activating_with_a_required_setting_missing_is_refused(register_plugin):
    register_plugin(ConfiguredPlugin(), "acme", active=False)
    with pytest.raises(PluginConfigError) as refused:
        update_plugin_config(identifier="acme", active=True, changes={"rate": "6"})
    assert refused.value.errors == {"api_key": "required to activate the plugin"}
    row = PluginConfig.objects.get(identifier="acme")
    assert row.active is False and row.settings == {}


def test_a_blank_secret_keeps_the_saved_one(register_plugin):
    register_plugin(ConfiguredPlugin(), "acme", active=False)
    update_plugin_config(identifier="acme", active=True, changes={"api_key": "sk_live_1"})
    update_plugin_config(identifier="acme", active=True, changes={"api_key": None, "rate": "9"})
    stored = PluginConfig.objects.get(identifier="acme").settings
    assert set(stored) == {"api_key", "rate"} and stored["rate"] == "9"
    assert crypto.unseal(stored["api_key"]) == "sk_live_1"  # kept, and stored encrypted


def test_the_admin_never_shows_a_saved_secret(register_plugin, staff_client):
    register_plugin(ConfiguredPlugin(), "acme", config={"api_key": "sk_live_SECRET"})
    row = PluginConfig.objects.get(identifier="acme")
    html = staff_client.get(f"/admin/plugins/pluginconfig/{row.pk}/change/").content.decode()
    assert "sk_live_SECRET" not in html
    assert 'type="password"' in html
    assert "A value is saved; leave blank to keep it." in html


def test_the_admin_refuses_activation_without_required_settings(register_plugin, staff_client):
    register_plugin(ConfiguredPlugin(), "acme", active=False)
    row = PluginConfig.objects.get(identifier="acme")
    response = staff_client.post(
        f"/admin/plugins/pluginconfig/{row.pk}/change/",
        {"active": "on", "setting__rate": "6.00", "setting__api_key": ""},
    )
    assert response.status_code == 200  # the form again, with the error
    assert "required to activate the plugin" in response.content.decode()
    assert PluginConfig.objects.get(pk=row.pk).active is False


def test_the_admin_saves_settings_and_activates(register_plugin, staff_client):
    register_plugin(ConfiguredPlugin(), "acme", active=False)
    row = PluginConfig.objects.get(identifier="acme")
    response = staff_client.post(
        f"/admin/plugins/pluginconfig/{row.pk}/change/",
        {"active": "on", "setting__api_key": "sk_test_2", "setting__rate": "6.50",
         "setting__sandbox": "on", "setting__mode": "b"},
    )
    assert response.status_code == 302
    row.refresh_from_db()
    assert row.active is True
    assert crypto.is_sealed(row.settings["api_key"])  # the secret is stored encrypted
    assert {**row.settings, "api_key": crypto.unseal(row.settings["api_key"])} == {
        "api_key": "sk_test_2", "rate": "6.50", "sandbox": True, "mode": "b",
    }
    assert row.updated_by.username == "boss"


def test_a_setting_from_the_environment_cannot_be_edited(
    register_plugin, staff_client, monkeypatch
):
    monkeypatch.setenv("ACME_RATE", "3.00")
    register_plugin(ConfiguredPlugin(), "acme", config={"api_key": "k"})
    row = PluginConfig.objects.get(identifier="acme")
    html = staff_client.get(f"/admin/plugins/pluginconfig/{row.pk}/change/").content.decode()
    assert "Set by the environment variable ACME_RATE" in html


def test_the_plugin_list_shows_each_plugins_state(staff_client, django_assert_max_num_queries):
    sync_plugin_configs()
    with django_assert_max_num_queries(12):
        response = staff_client.get("/admin/plugins/pluginconfig/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "webhook_notifier" in html and "missing settings" in html


def test_every_installed_plugin_gets_an_inactive_row_once():
    PluginConfig.objects.all().delete()
    added = sync_plugin_configs()
    assert {"flat_rate_shipping", "manual_payment", "webhook_notifier"} <= set(added)
    assert sync_plugin_configs() == []
    assert not PluginConfig.objects.filter(active=True).exists()


def test_an_uninstalled_plugins_settings_are_kept_and_read_only(staff_client):
    row = PluginConfig.objects.create(identifier="gone_plugin", settings={"api_key": "k"})
    page = staff_client.get(f"/admin/plugins/pluginconfig/{row.pk}/change/")
    assert page.status_code == 200
    assert "Not installed" in page.content.decode()
    response = staff_client.post(f"/admin/plugins/pluginconfig/{row.pk}/change/", {"active": "on"})
    assert response.status_code == 200
    assert "not installed" in response.content.decode()
    row.refresh_from_db()
    assert row.active is False and row.settings == {"api_key": "k"}


def test_the_demo_switches_the_bundled_plugins_on_once():
    from backoffice.plugin_host.services import activate_plugins

    assert activate_plugins(["flat_rate_shipping", "manual_payment"]) == [
        "flat_rate_shipping", "manual_payment",
    ]
    assert activate_plugins(["flat_rate_shipping", "manual_payment"]) == []
    with pytest.raises(PluginConfigError):
        activate_plugins(["webhook_notifier"])  # its URL and secret are required
