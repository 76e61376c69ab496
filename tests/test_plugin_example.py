"""The example third-party plugin, installed as its own package, works end to end."""

import hashlib
import hmac
import json

import pytest
import responses
from django.utils import timezone

from backoffice.plugin_host.events import emit_event
from backoffice.plugin_host.loading import get_plugin_host
from backoffice.plugin_host.models import DeliveryStatus, PluginEventDelivery
from backoffice.plugin_host.services import update_plugin_config

pytestmark = pytest.mark.django_db

RECEIVER = "https://hooks.example.com/store"
SECRET = "whsec_example"


@pytest.fixture
def notifier():
    plugin = get_plugin_host().plugins["webhook_notifier"]
    update_plugin_config(
        identifier="webhook_notifier", active=True, changes={"url": RECEIVER, "secret": SECRET}
    )
    return plugin


def test_it_was_found_through_its_own_distributions_entry_point(notifier):
    assert notifier.distribution == "backoffice-webhook-notifier"
    assert notifier.obj.__name__ == "backoffice_webhook_notifier"


@responses.activate
def test_order_placed_is_posted_signed(notifier, django_capture_on_commit_callbacks):
    responses.post(RECEIVER, status=204)
    with django_capture_on_commit_callbacks(execute=True):
        emit_event("order_placed", order_id=9, order_number="1009", total="3500.00",
                   currency="KES", customer={"email": "a@example.com", "phone": "",
                                             "name": "Amina", "language": ""})
    assert len(responses.calls) == 1
    request = responses.calls[0].request
    body = json.loads(request.body)
    assert body == {"event": "order_placed", "data": {
        "order_id": 9, "order_number": "1009", "total": "3500.00", "currency": "KES",
        "customer": {"email": "a@example.com", "phone": "", "name": "Amina", "language": ""}}}
    expected = "sha256=" + hmac.new(SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Backoffice-Signature"] == expected
    delivery = PluginEventDelivery.objects.get()
    assert delivery.status == DeliveryStatus.DELIVERED
    # The same on a retry of this event: the receiver can drop what it already has.
    assert request.headers["X-Backoffice-Event-Id"] == str(delivery.event_id)


@responses.activate
def test_a_receiver_error_is_retried_until_it_answers(notifier, django_capture_on_commit_callbacks):
    responses.post(RECEIVER, status=503)
    with django_capture_on_commit_callbacks(execute=True):
        emit_event("stock_low", variant_id=1, sku="TEE-M", warehouse_id=1, available=1,
                   threshold=5)
    delivery = PluginEventDelivery.objects.get()
    assert delivery.status == DeliveryStatus.PENDING
    assert "503 Server Error" in delivery.last_error

    responses.replace(responses.POST, RECEIVER, status=200)
    PluginEventDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    from backoffice.plugin_host.events import retry_due_deliveries

    retry_due_deliveries()
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert json.loads(responses.calls[-1].request.body)["data"]["sku"] == "TEE-M"


def test_it_cannot_be_activated_without_its_url_and_secret():
    from backoffice.plugin_host.errors import PluginConfigError

    with pytest.raises(PluginConfigError) as refused:
        update_plugin_config(identifier="webhook_notifier", active=True, changes={})
    assert set(refused.value.errors) == {"url", "secret"}
