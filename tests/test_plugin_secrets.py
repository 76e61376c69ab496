"""Plugin secrets are encrypted at rest, read back transparently, rotated, and never shown."""

import importlib
import logging
from io import StringIO
from types import SimpleNamespace

import pytest
from cryptography.fernet import Fernet
from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection

from backoffice import crypto
from backoffice.hookspecs import hookimpl
from backoffice.plugin_host import checks
from backoffice.plugin_host.config import ConfigField
from backoffice.plugin_host.errors import PluginConfigError
from backoffice.plugin_host.loading import get_plugin_host
from backoffice.plugin_host.models import PluginConfig
from backoffice.plugin_host.services import payment_provider, update_plugin_config

pytestmark = pytest.mark.django_db

SECRET = "sk_live_TOP_SECRET_123"
KEY_1 = Fernet.generate_key().decode()
KEY_2 = Fernet.generate_key().decode()


class Provider:
    code, name, supports_refunds = "acme_pay", "Acme Pay", False


class SecretPlugin:
    """A payment plugin with a secret key and an ordinary setting."""

    hookspec_version = ">=1.0,<2"
    config_fields = [
        ConfigField("api_key", "API key", kind="secret", required=True),
        ConfigField("webhook_secret", "Webhook secret", kind="secret"),
        ConfigField("rate", "Rate", kind="decimal", default="5.00"),
    ]

    @hookimpl
    def register_payment_providers(self):
        return [Provider()]


@pytest.fixture
def acme(register_plugin):
    return register_plugin(SecretPlugin(), "acme", config={"api_key": SECRET, "rate": "7"})


def _raw_settings(identifier: str) -> str:
    """The settings column as the database holds it, bypassing the ORM."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT CAST(settings AS TEXT) FROM plugins_pluginconfig WHERE identifier = %s",
            [identifier],
        )
        return cursor.fetchone()[0]


def _change_page(identifier: str) -> str:
    pk = PluginConfig.objects.get(identifier=identifier).pk
    return f"/admin/plugins/pluginconfig/{pk}/change/"


# --- the crypto module ---------------------------------------------------------------------------


def test_encrypt_and_decrypt_round_trip_with_the_secret_key_derived_key():
    token = crypto.encrypt(SECRET)
    assert token.startswith("gAAAA") and SECRET not in token
    assert crypto.decrypt(token) == SECRET
    assert crypto.unseal(crypto.seal(SECRET)) == SECRET
    assert crypto.unseal("a legacy plain value") == "a legacy plain value"


def test_the_first_configured_key_encrypts_and_every_key_decrypts(settings):
    settings.SECRETS_ENCRYPTION_KEYS = [KEY_1]
    token = crypto.encrypt(SECRET)
    assert Fernet(KEY_1).decrypt(token.encode()).decode() == SECRET
    settings.SECRETS_ENCRYPTION_KEYS = [KEY_2, KEY_1]
    assert crypto.decrypt(token) == SECRET
    assert Fernet(KEY_2).decrypt(crypto.encrypt("x").encode()) == b"x"


def test_a_value_encrypted_under_another_key_is_a_clear_error_without_the_value(settings):
    settings.SECRETS_ENCRYPTION_KEYS = [KEY_1]
    token = crypto.encrypt(SECRET)
    settings.SECRETS_ENCRYPTION_KEYS = [KEY_2]
    with pytest.raises(crypto.DecryptionError) as failed:
        crypto.decrypt(token)
    assert "configured keys" in str(failed.value) and SECRET not in str(failed.value)


def test_values_under_the_secret_key_or_its_fallbacks_still_open_after_switching(settings):
    old = crypto.encrypt(SECRET)  # under the key derived from SECRET_KEY
    settings.SECRETS_ENCRYPTION_KEYS = [KEY_1]
    assert crypto.decrypt(old) == SECRET
    settings.SECRETS_ENCRYPTION_KEYS = []
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-that-is-long-enough-for-django-to-be-happy-1234"
    assert crypto.decrypt(old) == SECRET


def test_a_malformed_key_is_refused_by_name_and_position_not_by_value(settings):
    settings.SECRETS_ENCRYPTION_KEYS = [KEY_1, "not-a-fernet-key"]
    with pytest.raises(ImproperlyConfigured, match="Key 2 of SECRETS_ENCRYPTION_KEYS"):
        crypto.encrypt(SECRET)
    problems = checks.check_encryption_keys(None)
    assert [p.id for p in problems] == ["backoffice.E103"]
    assert "not-a-fernet-key" not in problems[0].msg


# --- stored encrypted, read back transparently -----------------------------------------------


def test_the_fixture_stores_the_secret_encrypted_and_host_config_decrypts_it(acme):
    stored = PluginConfig.objects.get(identifier="acme").settings
    assert crypto.is_sealed(stored["api_key"])
    assert stored["rate"] == "7"  # not a secret: stored as it is
    raw = _raw_settings("acme")
    assert SECRET not in raw and "gAAAA" in raw
    resolved = get_plugin_host().config("acme")
    assert resolved.values["api_key"] == SECRET and resolved.sources["api_key"] == "admin"
    assert payment_provider("acme_pay").config["api_key"] == SECRET


def test_a_secret_round_trips_through_the_admin_form(register_plugin, staff_client):
    register_plugin(SecretPlugin(), "acme", active=False)
    response = staff_client.post(_change_page("acme"), {
        "active": "on", "setting__api_key": SECRET, "setting__rate": "6.50",
    })
    assert response.status_code == 302, response.content.decode()
    raw = _raw_settings("acme")
    assert SECRET not in raw and "gAAAA" in raw
    assert get_plugin_host().config("acme").values["api_key"] == SECRET

    # Shown back neither plain nor encrypted; a blank field keeps it, other changes save.
    html = staff_client.get(_change_page("acme")).content.decode()
    token = PluginConfig.objects.get(identifier="acme").settings["api_key"]["encrypted"]
    assert SECRET not in html and token not in html
    assert "A value is saved; leave blank to keep it." in html
    response = staff_client.post(_change_page("acme"), {
        "active": "on", "setting__api_key": "", "setting__rate": "8",
    })
    assert response.status_code == 302
    resolved = get_plugin_host().config("acme")
    assert resolved.values["api_key"] == SECRET and str(resolved.values["rate"]) == "8"


def test_a_saved_secret_can_be_removed_in_the_admin(register_plugin, staff_client):
    register_plugin(SecretPlugin(), "acme", active=False,
                    config={"api_key": SECRET, "webhook_secret": "whsec_1"})
    response = staff_client.post(_change_page("acme"), {
        "setting__api_key": "", "setting__webhook_secret": "",
        "setting__webhook_secret__clear": "on",
    })
    assert response.status_code == 302, response.content.decode()
    stored = PluginConfig.objects.get(identifier="acme").settings
    assert "webhook_secret" not in stored and crypto.unseal(stored["api_key"]) == SECRET


def test_update_plugin_config_encrypts_and_keeps_a_blank_secret(register_plugin):
    register_plugin(SecretPlugin(), "acme", active=False)
    update_plugin_config(identifier="acme", active=True, changes={"api_key": SECRET})
    token = PluginConfig.objects.get(identifier="acme").settings["api_key"]
    update_plugin_config(identifier="acme", active=True, changes={"api_key": None, "rate": "9"})
    assert PluginConfig.objects.get(identifier="acme").settings["api_key"] == token


def test_a_legacy_plain_value_is_still_read_and_reported_until_encrypted(acme):
    PluginConfig.objects.filter(identifier="acme").update(settings={"api_key": "legacy-plain"})
    assert get_plugin_host().config("acme").values["api_key"] == "legacy-plain"
    problems = checks.check_stored_secrets(None, databases=["default"])
    assert [(p.id, p.obj) for p in problems] == [("backoffice.W104", "acme")]
    assert "legacy-plain" not in problems[0].msg

    call_command("rotate_plugin_secrets", stdout=StringIO())
    stored = PluginConfig.objects.get(identifier="acme").settings
    assert crypto.unseal(stored["api_key"]) == "legacy-plain"
    assert checks.check_stored_secrets(None, databases=["default"]) == []


def test_the_data_migration_encrypts_installed_plugins_secrets_only(acme):
    migration = importlib.import_module(
        "backoffice.plugin_host.migrations.0002_encrypt_plugin_secrets"
    )
    PluginConfig.objects.filter(identifier="acme").update(
        settings={"api_key": "plain-key", "rate": "3"}
    )
    PluginConfig.objects.create(identifier="uninstalled", settings={"api_key": "left-alone"})
    schema_editor = SimpleNamespace(connection=connection)

    migration.encrypt_secrets(apps, schema_editor)
    stored = PluginConfig.objects.get(identifier="acme").settings
    assert crypto.is_sealed(stored["api_key"]) and stored["rate"] == "3"
    assert crypto.unseal(stored["api_key"]) == "plain-key"
    assert PluginConfig.objects.get(identifier="uninstalled").settings == {"api_key": "left-alone"}
    migration.encrypt_secrets(apps, schema_editor)  # again: nothing is encrypted twice
    assert crypto.unseal(PluginConfig.objects.get(identifier="acme").settings["api_key"]) == (
        "plain-key"
    )

    migration.decrypt_secrets(apps, schema_editor)  # backwards
    assert PluginConfig.objects.get(identifier="acme").settings == {
        "api_key": "plain-key", "rate": "3",
    }


# --- rotation --------------------------------------------------------------------------------


def test_rotation_with_two_keys(register_plugin, settings):
    settings.SECRETS_ENCRYPTION_KEYS = [KEY_1]
    register_plugin(SecretPlugin(), "acme", config={"api_key": SECRET, "webhook_secret": "wh"})
    PluginConfig.objects.create(  # a plugin not installed now: its secret is rotated too
        identifier="uninstalled", settings={"token": crypto.seal("other")}
    )

    settings.SECRETS_ENCRYPTION_KEYS = [KEY_2, KEY_1]  # a new key first, the old one still read
    assert get_plugin_host().config("acme").values["api_key"] == SECRET
    out = StringIO()
    call_command("rotate_plugin_secrets", stdout=out)
    assert "Re-encrypted 3 stored secret(s)" in out.getvalue()
    assert SECRET not in out.getvalue()

    settings.SECRETS_ENCRYPTION_KEYS = [KEY_2]  # the old key removed
    resolved = get_plugin_host().config("acme")
    assert resolved.values["api_key"] == SECRET and resolved.values["webhook_secret"] == "wh"
    stored = PluginConfig.objects.get(identifier="uninstalled").settings
    assert crypto.unseal(stored["token"]) == "other"
    token = PluginConfig.objects.get(identifier="acme").settings["api_key"]["encrypted"]
    assert Fernet(KEY_2).decrypt(token.encode()).decode() == SECRET
    assert checks.check_stored_secrets(None, databases=["default"]) == []


def test_a_dry_run_rotates_nothing(register_plugin, settings):
    settings.SECRETS_ENCRYPTION_KEYS = [KEY_1]
    register_plugin(SecretPlugin(), "acme", config={"api_key": SECRET})
    before = PluginConfig.objects.get(identifier="acme").settings
    settings.SECRETS_ENCRYPTION_KEYS = [KEY_2, KEY_1]
    out = StringIO()
    call_command("rotate_plugin_secrets", "--dry-run", stdout=out)
    assert "Would re-encrypt 1" in out.getvalue()
    assert PluginConfig.objects.get(identifier="acme").settings == before


def test_rotation_names_what_it_cannot_decrypt_and_rotates_the_rest(register_plugin, settings):
    settings.SECRETS_ENCRYPTION_KEYS = [KEY_1]
    register_plugin(SecretPlugin(), "acme", config={"api_key": SECRET})
    PluginConfig.objects.create(identifier="other", settings={"token": crypto.seal("x")})
    settings.SECRETS_ENCRYPTION_KEYS = [KEY_2]
    row = PluginConfig.objects.get(identifier="other")
    row.settings = {"token": crypto.seal("y")}  # under KEY_2: this one can be rotated
    row.save()
    with pytest.raises(CommandError) as failed:
        call_command("rotate_plugin_secrets", stdout=StringIO())
    message = str(failed.value)
    assert "plugin 'acme', setting 'api_key'" in message and SECRET not in message
    assert crypto.unseal(PluginConfig.objects.get(identifier="other").settings["token"]) == "y"


# --- the wrong key -----------------------------------------------------------------------------


@pytest.fixture
def under_a_lost_key(register_plugin, settings):
    """acme's secret stored under KEY_1, and then KEY_1 replaced by KEY_2 without rotation."""
    settings.SECRETS_ENCRYPTION_KEYS = [KEY_1]
    register_plugin(SecretPlugin(), "acme", config={"api_key": SECRET})
    settings.SECRETS_ENCRYPTION_KEYS = [KEY_2]


def test_the_wrong_key_is_a_clear_error_naming_the_plugin_and_field(
    under_a_lost_key, staff_client, caplog
):
    caplog.set_level(logging.ERROR)

    resolved = get_plugin_host().config("acme")
    assert resolved.values["api_key"] is None
    assert "cannot be decrypted" in resolved.errors["api_key"]
    assert not resolved.is_complete
    with pytest.raises(PluginConfigError) as refused:
        payment_provider("acme_pay")
    assert "'acme'" in str(refused.value) and "api_key" in str(refused.value)

    problems = checks.check_stored_secrets(None, databases=["default"])
    assert [(p.id, p.obj) for p in problems] == [("backoffice.W103", "acme")]
    assert "'api_key'" in problems[0].msg and "cannot be decrypted" in problems[0].msg
    out, err = StringIO(), StringIO()
    call_command("check", "--database", "default", stdout=out, stderr=err)
    report = out.getvalue() + err.getvalue()
    assert "backoffice.W103" in report and "'acme'" in report and "'api_key'" in report

    html = staff_client.get(_change_page("acme")).content.decode()
    assert "cannot be decrypted with the configured keys" in html

    everything = report + html + caplog.text + str(refused.value)
    assert SECRET not in everything
    assert "plugin acme: the stored setting api_key cannot be decrypted" in caplog.text


def test_with_the_wrong_key_the_admin_asks_for_the_secret_again(under_a_lost_key, staff_client):
    # Saving without it is refused, with the reason on the field.
    response = staff_client.post(_change_page("acme"), {"active": "on", "setting__api_key": ""})
    assert response.status_code == 200
    assert "enter it again" in response.content.decode()
    # Entering it again (under the key now configured) fixes it.
    response = staff_client.post(_change_page("acme"), {"active": "on", "setting__api_key": "new"})
    assert response.status_code == 302
    assert get_plugin_host().config("acme").values["api_key"] == "new"
    assert checks.check_stored_secrets(None, databases=["default"]) == []
