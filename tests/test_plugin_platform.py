"""The plugin platform's guarantees: a refused plugin stops nothing, a delivery has a time limit."""

from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command

from backoffice.plugin_host import events
from backoffice.plugin_host.loading import get_plugin_host


@pytest.fixture
def a_refused_plugin():
    host = get_plugin_host()
    host.refused["broken_plugin"] = (
        "plugin 'broken_plugin' failed to import: ModuleNotFoundError: No module named 'nope'"
    )
    try:
        yield "broken_plugin"
    finally:
        host.refused.pop("broken_plugin", None)


@pytest.mark.django_db
def test_check_passes_with_a_warning_while_a_plugin_is_refused(a_refused_plugin):
    out, err = StringIO(), StringIO()
    call_command("check", stdout=out, stderr=err)  # raises SystemCheckError on an Error
    report = out.getvalue() + err.getvalue()
    assert "backoffice.W102" in report and "broken_plugin" in report
    assert "Fix or remove the plugin, or add it to PLUGINS_BLOCK." in report


@pytest.mark.django_db
def test_migrate_runs_while_a_plugin_is_refused(a_refused_plugin):
    out = StringIO()
    call_command("migrate", interactive=False, verbosity=1, stdout=out, stderr=StringIO())
    assert "No migrations to apply" in out.getvalue()


@pytest.mark.django_db
def test_the_plugins_command_lists_a_refused_plugin(a_refused_plugin):
    out = StringIO()
    call_command("plugins", stdout=out)
    assert "broken_plugin REFUSED" in out.getvalue()


def test_each_delivery_job_has_a_time_limit_below_the_running_timeout(monkeypatch):
    enqueued = []
    monkeypatch.setattr(events, "async_task", lambda *a, **kw: enqueued.append((a, kw)))
    events._enqueue([7, 8])
    assert [args for args, _ in enqueued] == [(events.DELIVER_TASK, 7), (events.DELIVER_TASK, 8)]
    assert {kw["timeout"] for _, kw in enqueued} == {events.DELIVERY_TIMEOUT_SECONDS}
    assert enqueued[0][1]["task_name"] == "plugin-delivery-7"
    limit = events.DELIVERY_TIMEOUT_SECONDS
    # Stopped by its own limit well before the sweeper counts it as stuck, and before the
    # cluster's own timeout or its retry of an unacknowledged job.
    assert limit < events.RUNNING_TIMEOUT.total_seconds()
    assert limit < settings.Q_CLUSTER["timeout"] < settings.Q_CLUSTER["retry"]


@pytest.mark.django_db
def test_a_delivery_over_its_time_limit_is_stopped(monkeypatch, register_plugin,
                                                    django_capture_on_commit_callbacks):
    """django-q2 enforces the per-task timeout in the worker (SIGALRM), also in sync mode."""
    import time

    from django_q.exceptions import TimeoutException

    from backoffice.hookspecs import hookimpl
    from backoffice.plugin_host.models import DeliveryStatus, PluginEventDelivery

    class Slow:
        hookspec_version = ">=1.0,<2"

        @hookimpl
        def customer_registered(self, customer_id):
            time.sleep(5)

    register_plugin(Slow(), "slow_plugin")
    monkeypatch.setattr(events, "DELIVERY_TIMEOUT_SECONDS", 1)
    started = time.monotonic()
    with pytest.raises(TimeoutException), django_capture_on_commit_callbacks(execute=True):
        events.emit_event("customer_registered", customer_id=1, email="a@example.com")
    assert time.monotonic() - started < 4
    # Left "running": the sweeper counts it as a failed attempt after RUNNING_TIMEOUT.
    assert PluginEventDelivery.objects.get(plugin="slow_plugin").status == DeliveryStatus.RUNNING
