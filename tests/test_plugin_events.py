"""Events reach plugins after commit, one plugin at a time; failures are retried and recorded."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from backoffice.hookspecs import hookimpl
from backoffice.plugin_host import events
from backoffice.plugin_host.events import deliver, emit_event, retry_due_deliveries, retry_failed
from backoffice.plugin_host.models import DeliveryStatus, PluginEvent, PluginEventDelivery

pytestmark = pytest.mark.django_db(transaction=False)

ORDER = {"order_id": 7, "order_number": "1007", "total": "25.00", "currency": "KES"}


class Recorder:
    hookspec_version = ">=1.0,<2"

    def __init__(self) -> None:
        self.calls: list[dict] = []

    @hookimpl
    def order_placed(self, order_id, total):
        self.calls.append({"order_id": order_id, "total": total})


class Exploder:
    hookspec_version = ">=1.0,<2"

    def __init__(self, failures: int = 99) -> None:
        self.failures = failures
        self.attempts = 0

    @hookimpl
    def order_placed(self, order_id):
        self.attempts += 1
        if self.attempts <= self.failures:
            raise ConnectionError("the ERP is down")


def test_an_event_reaches_each_listening_plugin_after_commit(
    register_plugin, django_capture_on_commit_callbacks
):
    recorder = register_plugin(Recorder(), "recorder").obj
    with django_capture_on_commit_callbacks(execute=True):
        emit_event("order_placed", **ORDER)
        assert recorder.calls == [], "nothing is delivered before the commit"
    assert recorder.calls == [{"order_id": 7, "total": "25.00"}]
    delivery = PluginEventDelivery.objects.get(plugin="recorder")
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.attempts == 1


def test_a_rolled_back_change_fires_nothing(register_plugin, django_capture_on_commit_callbacks):
    recorder = register_plugin(Recorder(), "recorder").obj
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        emit_event("order_placed", **ORDER)
        raise RuntimeError("the order failed")
    assert callbacks == []
    assert recorder.calls == []
    assert not PluginEvent.objects.exists()


def test_inactive_plugins_get_no_delivery(register_plugin, django_capture_on_commit_callbacks):
    recorder = register_plugin(Recorder(), "recorder", active=False).obj
    with django_capture_on_commit_callbacks(execute=True):
        assert emit_event("order_placed", **ORDER) is None
    assert recorder.calls == []
    assert not PluginEventDelivery.objects.exists()


def test_one_plugin_failing_does_not_stop_another_or_the_caller(
    register_plugin, django_capture_on_commit_callbacks
):
    register_plugin(Exploder(), "exploder")
    recorder = register_plugin(Recorder(), "recorder").obj
    with django_capture_on_commit_callbacks(execute=True):
        emit_event("order_placed", **ORDER)  # no exception reaches the caller
    assert recorder.calls == [{"order_id": 7, "total": "25.00"}]
    failed = PluginEventDelivery.objects.get(plugin="exploder")
    assert failed.status == DeliveryStatus.PENDING
    assert failed.attempts == 1
    assert "ConnectionError: the ERP is down" in failed.last_error
    assert failed.next_attempt_at > timezone.now() + timedelta(seconds=20)


def _make_due(delivery_id: int) -> None:
    PluginEventDelivery.objects.filter(pk=delivery_id).update(next_attempt_at=timezone.now())


def test_a_failing_plugin_is_retried_with_backoff_until_it_succeeds(
    register_plugin, django_capture_on_commit_callbacks
):
    exploder = register_plugin(Exploder(failures=2), "exploder").obj
    with django_capture_on_commit_callbacks(execute=True):
        emit_event("order_placed", **ORDER)
    delivery = PluginEventDelivery.objects.get()
    first_wait = delivery.next_attempt_at - timezone.now()

    assert deliver(delivery.pk) == "skipped", "not due yet: the backoff holds"
    _make_due(delivery.pk)
    assert retry_due_deliveries() == 1  # the schedule re-enqueues it (jobs run inline here)
    delivery.refresh_from_db()
    assert delivery.attempts == 2 and delivery.status == DeliveryStatus.PENDING
    assert delivery.next_attempt_at - timezone.now() > first_wait, "the wait grows"

    _make_due(delivery.pk)
    retry_due_deliveries()
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.last_error == ""
    assert exploder.attempts == 3


def test_a_plugin_that_keeps_failing_is_marked_failed_and_can_be_retried(
    register_plugin, django_capture_on_commit_callbacks
):
    register_plugin(Exploder(), "exploder")
    with django_capture_on_commit_callbacks(execute=True):
        emit_event("order_placed", **ORDER)
    delivery = PluginEventDelivery.objects.get()
    for _ in range(events.MAX_ATTEMPTS - 1):
        _make_due(delivery.pk)
        deliver(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts == events.MAX_ATTEMPTS
    _make_due(delivery.pk)
    assert retry_due_deliveries() == 0, "failed deliveries wait for a person"

    with django_capture_on_commit_callbacks(execute=True):
        assert retry_failed([delivery.pk]) == 1
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and delivery.status == DeliveryStatus.PENDING


def test_a_delivery_stuck_running_is_timed_out_and_retried(register_plugin):
    recorder = register_plugin(Recorder(), "recorder").obj
    event = PluginEvent.objects.create(hook="order_placed", payload=ORDER)
    stuck = PluginEventDelivery.objects.create(
        event=event, plugin="recorder", status=DeliveryStatus.RUNNING, attempts=1,
        next_attempt_at=timezone.now(),
        started_at=timezone.now() - events.RUNNING_TIMEOUT - timedelta(seconds=1),
    )
    retry_due_deliveries()
    stuck.refresh_from_db()
    assert stuck.status == DeliveryStatus.PENDING
    assert "timed out" in stuck.last_error
    _make_due(stuck.pk)
    retry_due_deliveries()
    stuck.refresh_from_db()
    assert stuck.status == DeliveryStatus.DELIVERED
    assert recorder.calls == [{"order_id": 7, "total": "25.00"}]


def test_a_delivery_is_never_run_twice(register_plugin, django_capture_on_commit_callbacks):
    recorder = register_plugin(Recorder(), "recorder").obj
    with django_capture_on_commit_callbacks(execute=True):
        emit_event("order_placed", **ORDER)
    delivery = PluginEventDelivery.objects.get()
    assert deliver(delivery.pk) == "skipped"  # a late duplicate job, or the sweeper
    assert len(recorder.calls) == 1


def test_an_unknown_event_name_is_refused():
    with pytest.raises(ValueError, match="not a hook"):
        emit_event("order_plaeced", order_id=1)


def test_failed_deliveries_are_listed_in_the_admin(
    register_plugin, staff_client, django_capture_on_commit_callbacks
):
    register_plugin(Exploder(), "exploder")
    with django_capture_on_commit_callbacks(execute=True):
        emit_event("order_placed", **ORDER)
    html = staff_client.get("/admin/plugins/plugineventdelivery/").content.decode()
    assert "ConnectionError: the ERP is down" in html
    event = PluginEvent.objects.get()
    assert staff_client.get(f"/admin/plugins/pluginevent/{event.pk}/change/").status_code == 200
