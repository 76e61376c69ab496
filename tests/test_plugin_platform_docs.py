"""docs/plugins.md says what the code does: its testing section runs as written in a plugin's own
repository, and its retry timings are the code's constants."""

import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

from backoffice.plugin_host import events

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "plugins.md").read_text()
SETTINGS_VARS = set(
    re.findall(r'env_(?:str|bool|int|list)\(\s*"([A-Z_]+)"',
               (ROOT / "backoffice" / "settings.py").read_text())
)


def _section(title: str) -> str:
    return DOC.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def _blocks(section: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", section, flags=re.DOTALL)


def _plain(text: str) -> str:
    return " ".join(text.split())


# A test of a plugin author's own, next to the documented one: secrets reach the plugin
# decrypted, each test starts clean, and the errors import from where the docs say.
TINY_PLUGIN = '''
from backoffice.hookspecs import hookimpl
from backoffice.plugin_host.config import ConfigField
from backoffice.plugin_host.errors import ShippingUnavailable
from backoffice.plugin_host.loading import get_plugin_host

hookspec_version = ">=1.0,<2"
config_fields = [ConfigField("token", "Token", kind="secret", required=True)]
seen = []


@hookimpl
def customer_registered(customer_id, email):
    seen.append((email, get_plugin_host().config("tiny_plugin").values["token"]))


@hookimpl
def shipping_rate(method_code, request):
    if method_code == "tiny":
        raise ShippingUnavailable("not there")
'''

TINY_TESTS = '''
import pytest

import tiny_plugin
from backoffice.plugin_host.errors import ShippingUnavailable
from backoffice.plugin_host.events import emit_event
from backoffice.plugin_host.models import PluginConfig


def test_the_hook_runs_with_the_decrypted_secret(register_plugin,
                                                 django_capture_on_commit_callbacks):
    register_plugin(tiny_plugin, name="tiny_plugin", config={"token": "t0ken"})
    assert "t0ken" not in str(PluginConfig.objects.get(identifier="tiny_plugin").settings)
    with django_capture_on_commit_callbacks(execute=True):
        emit_event("customer_registered", customer_id=1, email="a@example.com")
    assert tiny_plugin.seen == [("a@example.com", "t0ken")]


def test_each_test_starts_clean(register_plugin):
    assert not PluginConfig.objects.filter(identifier="tiny_plugin").exists()
    register_plugin(tiny_plugin, name="tiny_plugin", config={"token": "x"})
    with pytest.raises(ShippingUnavailable):
        tiny_plugin.shipping_rate(method_code="tiny", request=None)
'''


def test_the_testing_section_runs_as_written_in_a_plugins_own_repository(tmp_path):
    plugin_source = _blocks(_section("A plugin in five minutes"), "python")[0]
    testing = _section("Testing your plugin")
    [command] = [line for block in _blocks(testing, "sh") for line in block.splitlines()
                 if line.strip() and not line.startswith("#")]
    test_source = _blocks(testing, "python")[0]
    assert "from backoffice.plugin_host.events import emit_event" in test_source
    assert "from backoffice.plugin_host.errors import" in _plain(testing)
    assert "ShippingUnavailable" in testing and "Q_CLUSTER" in testing

    # A plugin's repository: its package and its tests, and nothing of the back office's.
    (tmp_path / "my_loyalty").mkdir()
    (tmp_path / "my_loyalty" / "__init__.py").write_text(plugin_source)
    (tmp_path / "tiny_plugin.py").write_text(TINY_PLUGIN)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_my_loyalty.py").write_text(test_source)
    (tmp_path / "tests" / "test_tiny_plugin.py").write_text(textwrap.dedent(TINY_TESTS))

    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "pytest"], command
    env = {
        name: value for name, value in os.environ.items()
        if name not in SETTINGS_VARS and name != "DJANGO_SETTINGS_MODULE"
        and not name.startswith("PYTEST_")
    }
    result = subprocess.run(
        [sys.executable, *argv[1:], "-p", "no:cacheprovider"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "3 passed" in output, output
    # The plugin's directory, not the back office's pytest configuration, was the root.
    assert f"rootdir: {tmp_path}" in output and "configfile" not in output, output


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g} s"
    if seconds < 3600:
        return f"{seconds / 60:g} min"
    hours = seconds / 3600
    return f"{hours:g} hour" + ("s" if hours != 1 else "")


def test_the_retry_timings_in_the_docs_are_the_codes():
    text = _plain(_section("Events, the outbox and retries"))
    waits = [_duration(events._backoff(attempt).total_seconds())
             for attempt in range(1, events.MAX_ATTEMPTS)]
    assert (
        f"backoff: {waits[0]} after the first failed attempt, then "
        f"{', '.join(waits[1:-1])} and {waits[-1]} (doubling, never more than "
        f"{_duration(events.BACKOFF_MAX_SECONDS)} apart); the {events.MAX_ATTEMPTS}th failed "
        "attempt marks it failed"
    ) in text
    assert f"One delivery may run for {events.DELIVERY_TIMEOUT_SECONDS} s" in text
    minutes = events.RUNNING_TIMEOUT.total_seconds() / 60
    assert f"once it has been running for {minutes:g} minutes" in text
