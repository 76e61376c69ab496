"""Plugin settings in the admin: defaults are shown, and clearing a field brings them back."""

import re
from decimal import Decimal

import pytest

from backoffice.hookspecs import hookimpl
from backoffice.plugin_host.config import ConfigField
from backoffice.plugin_host.loading import get_plugin_host
from backoffice.plugin_host.models import PluginConfig
from backoffice.plugin_host.services import update_plugin_config

pytestmark = pytest.mark.django_db

FIELDS = [
    ConfigField("greeting", "Greeting", default="Hello"),
    ConfigField("footer", "Footer", kind="text", default="Thanks"),
    ConfigField("timeout", "Timeout", kind="int", default=30, help_text="Seconds."),
    ConfigField("sandbox", "Sandbox", kind="bool", default=True),
    ConfigField("rate", "Rate", kind="decimal", default="5.00"),
    ConfigField("endpoint", "Endpoint", kind="url", default="https://api.example.com"),
    ConfigField("mode", "Mode", kind="choice", choices=[("a", "Alpha"), ("b", "Beta")],
                default="b"),
    ConfigField("api_key", "API key", kind="secret"),
]
DEFAULTS = {
    "greeting": "Hello", "footer": "Thanks", "timeout": 30, "sandbox": True,
    "rate": Decimal("5.00"), "endpoint": "https://api.example.com", "mode": "b", "api_key": None,
}
# A value other than the default, as stored, for every field kind.
OTHER = {
    "greeting": "Hi", "footer": "Bye", "timeout": "45", "sandbox": False, "rate": "7.25",
    "endpoint": "https://other.example.com", "mode": "a",
}
EMPTY_FORM = {f"setting__{name}": "" for name in OTHER}


class DefaultsPlugin:
    hookspec_version = ">=1.0,<2"
    config_fields = FIELDS

    @hookimpl
    def order_placed(self, order_id):
        pass


@pytest.fixture
def page(register_plugin):
    register_plugin(DefaultsPlugin(), "acme", active=False)
    return f"/admin/plugins/pluginconfig/{PluginConfig.objects.get(identifier='acme').pk}/change/"


def test_the_form_shows_every_default(page, staff_client):
    html = staff_client.get(page).content.decode()
    for shown in ["Hello", "Thanks", "30", "5.00", "https://api.example.com"]:
        assert f"Default: {shown} (used when nothing is saved)." in html
        assert f'placeholder="{shown}"' in html
    assert "Seconds. Default: 30" in html  # after the plugin's own help text
    assert "Default: Yes (used when nothing is saved)." in html
    assert re.search(r'<option value=""[^>]*>Default \(Yes\)</option>', html)
    assert re.search(r'<option value=""[^>]*>Default \(Beta\)</option>', html)
    # A secret has no default to show, and its state is all the form says about it.
    assert "Not set." in html


@pytest.mark.parametrize("name", sorted(OTHER))
def test_clearing_a_field_removes_the_saved_value_so_the_default_applies(
    page, staff_client, name
):
    update_plugin_config(identifier="acme", active=False, changes={name: OTHER[name]})
    resolved = get_plugin_host().config("acme")
    assert resolved.sources[name] == "admin" and resolved.values[name] != DEFAULTS[name]

    response = staff_client.post(page, EMPTY_FORM)
    assert response.status_code == 302, response.content.decode()
    assert PluginConfig.objects.get(identifier="acme").settings == {}
    resolved = get_plugin_host().config("acme")
    assert resolved.sources[name] == "default"
    assert resolved.values == DEFAULTS


def test_every_kind_saves_through_the_form_and_shows_what_is_saved(page, staff_client):
    form = {f"setting__{name}": str(value) for name, value in OTHER.items()}
    form["setting__sandbox"] = "false"  # "No", which is not the same as the default
    response = staff_client.post(page, form)
    assert response.status_code == 302, response.content.decode()
    assert PluginConfig.objects.get(identifier="acme").settings == OTHER
    values = get_plugin_host().config("acme").values
    assert values["sandbox"] is False and values["timeout"] == 45
    assert values["rate"] == Decimal("7.25") and values["mode"] == "a"

    html = staff_client.get(page).content.decode()
    assert re.search(r'<option value="false" selected>', html)
    assert 'value="45"' in html and 'value="7.25"' in html
    assert re.search(r'<option value="a" selected>', html)


def test_a_yes_no_setting_has_three_states(page, staff_client):
    staff_client.post(page, {**EMPTY_FORM, "setting__sandbox": "true"})
    assert PluginConfig.objects.get(identifier="acme").settings == {"sandbox": True}
    staff_client.post(page, {**EMPTY_FORM, "setting__sandbox": "false"})
    assert PluginConfig.objects.get(identifier="acme").settings == {"sandbox": False}
    staff_client.post(page, EMPTY_FORM)
    assert PluginConfig.objects.get(identifier="acme").settings == {}
    assert get_plugin_host().config("acme").values["sandbox"] is True


def test_a_value_from_the_environment_is_shown_with_its_variable(
    page, staff_client, monkeypatch
):
    update_plugin_config(identifier="acme", active=False, changes={"timeout": "45"})
    monkeypatch.setenv("ACME_TIMEOUT", "90")
    monkeypatch.setenv("ACME_API_KEY", "sk_from_env")
    html = staff_client.get(page).content.decode()
    assert "Set by the environment variable ACME_TIMEOUT, which wins" in html
    assert "Set by the environment variable ACME_API_KEY, which wins" in html
    # The value in effect, not the one saved underneath; never an environment secret.
    timeout_input = re.search(r'<input[^>]*name="setting__timeout"[^>]*>', html).group(0)
    assert 'value="90"' in timeout_input and "disabled" in timeout_input
    assert "sk_from_env" not in html

    # Saving the form leaves the shadowed value alone.
    response = staff_client.post(page, EMPTY_FORM)
    assert response.status_code == 302
    assert PluginConfig.objects.get(identifier="acme").settings == {"timeout": "45"}
    assert get_plugin_host().config("acme").sources["timeout"] == "env"
