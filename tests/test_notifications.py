"""Notifications: decided in the change's transaction, sent once after commit, through a real
SMTP server on loopback (aiosmtpd) and a recording phone channel; retries, failures, templates,
phones, preferences and staff alerts."""

from __future__ import annotations

import email
import socket
import threading
import uuid
from datetime import timedelta
from email import policy

import pytest
from aiosmtpd.controller import Controller
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import Client
from django.utils import timezone

from backoffice.catalog.models import Product, Variant
from backoffice.hookspecs import hookimpl
from backoffice.inventory.models import Stock
from backoffice.inventory.services import adjust_stock
from backoffice.notifications import services as notifications
from backoffice.notifications.models import (
    MessageTemplate,
    Notification,
    NotificationRule,
    StaffAlert,
    Status,
)
from backoffice.notifications.phones import InvalidPhoneNumber, to_e164
from backoffice.notifications.rendering import TemplateError, render, sms_length
from backoffice.orders import services as orders
from backoffice.orders.models import Order
from backoffice.plugin_host.protocols import DeliveryResult
from backoffice.plugin_host.services import activate_plugins

pytestmark = pytest.mark.django_db
PASSWORD = "correct-horse-battery-9"
ADDRESS = {"first_name": "Amina", "last_name": "Otieno", "line1": "Moi Avenue 1",
           "city": "Nairobi", "country": "KE"}


# --- A real SMTP server, and a phone channel that records what it is given -----------------------


class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        with self.lock:
            self.messages.append(message)
        return "250 OK"

    def to(self, address: str) -> list[email.message.EmailMessage]:
        return [m for m in self.messages if address in m["To"]]


def free_port() -> int:
    # aiosmtpd's controller checks its server by connecting to the port it was given: port 0
    # cannot be checked, so take a free one first.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp(settings):
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = controller.port
    settings.EMAIL_USE_TLS = False
    yield inbox
    controller.stop()


class PhoneChannel:
    """A third party's phone channel: records every message it is given."""

    recipient_kind = "phone"

    def __init__(self, code: str = "sms", outcome=None) -> None:
        self.code = code
        self.name = f"Recorded {code}"
        self.sent: list = []
        self.outcome = outcome  # None: sent; an exception: raised; a DeliveryResult: returned

    def send(self, notification, config):
        if isinstance(self.outcome, Exception):
            raise self.outcome
        self.sent.append(notification)
        return self.outcome or DeliveryResult(
            status="sent", provider_message_id=f"msg-{len(self.sent)}", cost="KES 0.80")


class ChannelPlugin:
    hookspec_version = ">=1.1,<2"

    def __init__(self, channel) -> None:
        self.channel = channel

    @hookimpl
    def register_notification_channels(self):
        return [self.channel]


@pytest.fixture
def sms(register_plugin):
    channel = PhoneChannel()
    register_plugin(ChannelPlugin(channel), "recorded_sms")
    return channel


@pytest.fixture(autouse=True)
def shelf():
    activate_plugins(["flat_rate_shipping", "manual_payment", "email"])
    product = Product.objects.create(name="Kikoy towel", slug="kikoy")
    towel = Variant.objects.create(product=product, sku="KIK", name="Blue", price="1200.00")
    adjust_stock(variant_id=towel.pk, quantity_change=10)
    return towel


@pytest.fixture
def boss(django_user_model):
    return django_user_model.objects.create_superuser("boss", "boss@shop.example", "x")


def checkout(client, *, email_address="amina@example.com", phone="0712 345 678", headers=None,
             quantity=2, key=None):
    headers = dict(headers or {})
    if "HTTP_AUTHORIZATION" not in headers:
        token = client.post("/api/v1/cart").json()["token"]
        headers["HTTP_X_CART_TOKEN"] = token
    assert client.post("/api/v1/cart/lines", {"sku": "KIK", "quantity": quantity},
                       content_type="application/json", **headers).status_code == 200
    body = {"shipping_method": "flat_rate", "shipping_address": ADDRESS,
            "payment_method": "manual", "email": email_address, "phone": phone}
    response = client.post("/api/v1/checkout", body, content_type="application/json",
                           HTTP_IDEMPOTENCY_KEY=key or str(uuid.uuid4()), **headers)
    assert response.status_code == 201, response.json()
    return Order.objects.get(number=response.json()["number"])


# --- Invariants -------------------------------------------------------------------------------


def test_a_checkout_mails_one_confirmation_through_smtp_and_a_replay_sends_nothing_more(
    client, smtp, boss, django_capture_on_commit_callbacks,
):
    with django_capture_on_commit_callbacks(execute=True):
        order = checkout(client)
    mails = smtp.to("amina@example.com")
    assert len(mails) == 1
    mail = mails[0]
    assert order.number in mail["Subject"] and "2,405.00" in mail["Subject"]
    text = mail.get_body(("plain",)).get_content()
    html = mail.get_body(("html",)).get_content()
    assert "2 x Kikoy towel (Blue)" in text and "Pay in cash when your order arrives." in text
    assert "Kikoy towel" in html and order.number in html
    assert mail["Auto-Submitted"] == "auto-generated"
    # The staff's new-order alert, to the superuser nobody else was set up for.
    assert len(smtp.to("boss@shop.example")) == 1
    row = Notification.objects.get(event="order_placed", channel="email")
    assert (row.status, row.attempts, row.recipient) == (Status.SENT, 1, "amina@example.com")
    assert row.provider_message_id == "".join(str(mail["Message-ID"]).split())
    assert row.body == text.replace("\r\n", "\n").strip()

    # The event again (a replayed webhook, a retried job): no new row, no new mail.
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        notifications.order_placed(order)
    assert notifications.send_event(f"order_placed:order:{order.pk}:placed") == 0
    assert notifications.send(row.pk) == "skipped"
    assert len(smtp.to("amina@example.com")) == 1
    assert Notification.objects.filter(order=order).count() == 2


def test_a_rolled_back_change_leaves_no_message(client, shelf):
    order = checkout(client)
    before = Notification.objects.count()
    with pytest.raises(RuntimeError), transaction.atomic():
        orders.add_note(order, "about to fail")
        notifications.refund_succeeded(order, type("R", (), {"pk": 999, "amount": 1,
                                                             "reason": ""})())
        raise RuntimeError("rolled back")
    assert Notification.objects.count() == before


def test_nothing_is_sent_inside_the_request(client, smtp):
    order = checkout(client)  # on_commit callbacks are not run by this test's transaction
    assert smtp.messages == []
    assert set(order.notifications.values_list("status", flat=True)) == {Status.QUEUED}


# --- Sending: retries, permanent failures, lost workers ----------------------------------------


def _row(channel: str = "sms", **fields) -> Notification:
    return Notification.objects.create(
        event="staff_low_stock", event_key=f"test:{uuid.uuid4()}", audience="staff",
        channel=channel, recipient="+254712345678",
        context={"sku": "KIK", "product_name": "Kikoy", "warehouse": "NBO", "available": 1,
                 "threshold": 2}, next_attempt_at=timezone.now(), **fields)


def test_a_temporary_failure_is_retried_with_backoff_then_given_up(register_plugin):
    channel = PhoneChannel(outcome=ConnectionError("gateway timeout"))
    register_plugin(ChannelPlugin(channel), "flaky_sms")
    row = _row()
    assert notifications.send(row.pk) == Status.QUEUED
    row.refresh_from_db()
    assert row.attempts == 1 and "gateway timeout" in row.error
    wait = (row.next_attempt_at - timezone.now()).total_seconds()
    assert 25 < wait <= 30
    assert notifications.send(row.pk) == "skipped"  # not due yet
    for _attempt in range(2, notifications.MAX_ATTEMPTS + 1):
        Notification.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now())
        status = notifications.send(row.pk)
    row.refresh_from_db()
    assert status == Status.FAILED and row.attempts == notifications.MAX_ATTEMPTS
    assert row.error.startswith(f"gave up after {notifications.MAX_ATTEMPTS} attempts")


def test_a_permanent_failure_is_not_retried(register_plugin):
    channel = PhoneChannel(outcome=DeliveryResult(status="failed", error="InvalidPhoneNumber"))
    register_plugin(ChannelPlugin(channel), "strict_sms")
    row = _row()
    assert notifications.send(row.pk) == Status.FAILED
    row.refresh_from_db()
    assert (row.attempts, row.error, row.next_attempt_at) == (1, "InvalidPhoneNumber", None)
    assert notifications.retry_due() == 0


def test_a_message_whose_worker_died_is_failed_never_sent_twice(sms):
    row = _row(status=Status.SENDING, attempts=1)
    Notification.objects.filter(pk=row.pk).update(
        started_at=timezone.now() - notifications.SENDING_TIMEOUT - timedelta(seconds=1))
    notifications.retry_due()
    row.refresh_from_db()
    assert row.status == Status.FAILED and "may or may not have gone out" in row.error
    assert sms.sent == []
    # Staff decide: resend queues it again, once.
    queued, refused = notifications.resend([row.pk])
    assert (queued, refused) == (1, 0)
    assert notifications.send(row.pk) == Status.SENT and len(sms.sent) == 1


def test_the_sweeper_sends_what_a_lost_enqueue_left_behind(sms):
    row = _row()
    assert notifications.retry_due() == 0  # its event job is about to send it
    Notification.objects.filter(pk=row.pk).update(
        next_attempt_at=timezone.now() - notifications.LOST_ENQUEUE_AFTER)
    assert notifications.retry_due() == 1  # the queue runs jobs in the caller in tests
    row.refresh_from_db()
    assert row.status == Status.SENT and row.cost == "KES 0.80"


def test_a_template_that_cannot_render_fails_the_message_with_its_reason(sms):
    MessageTemplate.objects.create(event="staff_low_stock", channel="sms", language="en",
                                   text="{{ sku|no_such_filter }}")
    row = _row()
    assert notifications.send(row.pk) == Status.FAILED
    row.refresh_from_db()
    assert "template cannot render" in row.error and sms.sent == []


def test_a_channel_switched_off_after_queueing_fails_the_message(sms, register_plugin):
    row = _row(channel="whatsapp")
    assert notifications.send(row.pk) == Status.FAILED
    assert "not active" in Notification.objects.get(pk=row.pk).error


# --- Customers: channels, phones, language ----------------------------------------------------


def test_phone_numbers_are_stored_in_e164_in_the_stores_country(settings):
    settings.STORE_COUNTRY = "KE"
    for written in ("0712 345 678", "254712345678", "+254712345678", "+254 712-345-678"):
        assert to_e164(written) == "+254712345678"
    assert to_e164("+49 30 1234567") == "+49301234567"
    assert to_e164("030 1234567", "DE") == "+49301234567"
    with pytest.raises(InvalidPhoneNumber, match="write it with its country code"):
        to_e164("12345")


def test_sms_length_counts_gsm7_and_unicode_parts():
    assert sms_length("a" * 160) == sms_length("a" * 160)
    assert (sms_length("a" * 160).parts, sms_length("a" * 161).parts) == (1, 2)
    assert sms_length("€" * 80).characters == 160  # extended characters take two
    assert sms_length("Asante 🙏").encoding == "UCS-2"
    assert (sms_length("ሰላም" * 23).parts, sms_length("ሰላም" * 24).parts) == (1, 2)  # 69, 72


def test_the_customer_chooses_channels_and_the_store_reads_the_phone(client, sms):
    tokens = client.post("/api/v1/auth/register", {"email": "wanjiru@example.com",
                                                   "password": PASSWORD},
                         content_type="application/json").json()
    auth = {"HTTP_AUTHORIZATION": f"Bearer {tokens['access_token']}"}
    me = client.get("/api/v1/me", **auth).json()
    assert me["notification_channels"] == ["email", "sms"] and me["language"] == ""
    changed = client.patch("/api/v1/me", {"phone": "0712 345 678",
                                          "notification_channels": ["sms"]},
                           content_type="application/json", **auth)
    assert changed.status_code == 200, changed.json()
    assert (changed.json()["phone"], changed.json()["notification_channels"]) == (
        "+254712345678", ["sms"])
    for bad in ({"phone": "12"}, {"notification_channels": ["pigeon"]}, {"language": "xx"}):
        refused = client.patch("/api/v1/me", bad, content_type="application/json", **auth)
        assert refused.status_code == 400, (bad, refused.json())
        assert refused.json()["detail"]
    order = checkout(client, headers=auth, email_address="wanjiru@example.com",
                     phone="0712 345 678")
    assert order.phone == "+254712345678"
    assert list(order.notifications.filter(audience="customer")
                .values_list("channel", "recipient")) == [("sms", "+254712345678")]


def test_a_checkout_with_an_impossible_phone_is_refused_clearly(client):
    token = client.post("/api/v1/cart").json()["token"]
    client.post("/api/v1/cart/lines", {"sku": "KIK", "quantity": 1},
                content_type="application/json", HTTP_X_CART_TOKEN=token)
    response = client.post("/api/v1/checkout", {
        "shipping_method": "flat_rate", "shipping_address": ADDRESS, "email": "a@example.com",
        "phone": "123"}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="k",
        HTTP_X_CART_TOKEN=token)
    assert response.status_code == 400 and response.json()["code"] == "invalid_phone"


def test_the_merchants_switch_and_wording_and_the_customers_language(client, sms):
    NotificationRule.objects.filter(event="order_placed", channel="email").update(enabled=False)
    MessageTemplate.objects.create(event="order_placed", channel="sms", language="sw",
                                   text="Asante {{ customer_name }}! Oda {{ order_number }}.")
    user = get_user_model().objects.create_user("sw@example.com", "sw@example.com", PASSWORD)
    from backoffice.customers.models import CustomerProfile

    CustomerProfile.objects.create(user=user, language="sw")
    order = checkout(client, email_address="sw@example.com")
    Order.objects.filter(pk=order.pk).update(user=user)
    Notification.objects.all().delete()
    order.refresh_from_db()
    with transaction.atomic():
        notifications.order_placed(order)
    rows = list(order.notifications.filter(audience="customer"))
    assert [r.channel for r in rows] == ["sms"]  # email switched off for this message
    assert notifications.send(rows[0].pk) == Status.SENT
    assert sms.sent[-1].body == f"Asante Amina Otieno! Oda {order.number}."
    assert sms.sent[-1].recipient == "+254712345678" and sms.sent[-1].language == "sw"
    # No Swahili wording for another message: the store's English one.
    rendered = render("order_delivered", "sms", "phone", {"order_number": "9", "store_name": "S"},
                      "sw")
    assert rendered.text.startswith("S: order 9 was delivered")


def test_a_third_party_phone_channel_uses_the_sms_wording(register_plugin):
    whatsapp = PhoneChannel(code="whatsapp")
    register_plugin(ChannelPlugin(whatsapp), "whatsapp")
    row = _row(channel="whatsapp")
    assert notifications.send(row.pk) == Status.SENT
    assert whatsapp.sent[0].body == "Low stock: KIK 1 left in NBO."


def test_every_shipped_template_renders_with_its_sample():
    from backoffice.notifications import catalogue

    for code, spec in catalogue.EVENTS.items():
        context = {"store_name": "Duka", **spec.sample}
        email_message = render(code, "email", "email", context)
        assert email_message.subject and email_message.text and "<html" in email_message.html
        assert "{{" not in email_message.text + email_message.html
        if not spec.email_only:
            assert render(code, "sms", "phone", context).text
    with pytest.raises(TemplateError, match="no template"):
        render("email_verification", "sms", "phone", {})


# --- Account mails ---------------------------------------------------------------------------


def test_a_password_reset_goes_through_the_outbox_and_its_link_is_not_kept(
    client, smtp, django_capture_on_commit_callbacks,
):
    get_user_model().objects.create_user("reset@example.com", "reset@example.com", PASSWORD)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post("/api/v1/auth/password/reset", {"email": "reset@example.com"},
                           content_type="application/json").status_code == 202
    [mail] = smtp.to("reset@example.com")
    assert "reset-password?uid=" in mail.get_body(("plain",)).get_content()
    row = Notification.objects.get(event="password_reset")
    assert row.status == Status.SENT and row.sensitive
    assert "reset-password" not in row.body + row.html
    assert notifications.resend([row.pk]) == (0, 1)


# --- The whole order, customer and staff ---------------------------------------------------------


def test_place_pay_ship_deliver_and_refund_tell_the_customer_once_per_step_per_channel(
    client, smtp, sms, django_user_model, django_capture_on_commit_callbacks,
):
    """Placed over the API, then paid, shipped, delivered and partly refunded by staff in the
    admin: one message per step per channel the customer chose, one new-order alert for the
    staff, and the order's timeline lists them all."""
    boss = django_user_model.objects.create_superuser("boss", "boss@shop.example", "pw-123-long")
    staff = Client()
    staff.force_login(boss)
    with django_capture_on_commit_callbacks(execute=True):
        order = checkout(client)
    page = f"/admin/orders/order/{order.pk}"
    line = order.lines.get()
    for url, data in [
        (f"{page}/mark-paid/", {"note": "M-Pesa paybill, checked"}),
        (f"{page}/ship/", {f"line_{line.pk}": 2, "carrier": "G4S", "tracking_number": "G4S-1",
                           "tracking_url": "https://track.example.com/G4S-1"}),
        (f"{page}/mark-delivered/", {}),
        (f"{page}/refund/", {f"line_{line.pk}": 1, "reason": "One arrived torn"}),
    ]:
        with django_capture_on_commit_callbacks(execute=True):
            answer = staff.post(url, data)
        assert answer.status_code == 302, (url, answer.content.decode()[:2000])
    # Replays of the steps' events, and the sweeper: nothing more.
    order.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        notifications.order_placed(order)
        notifications.order_moved(order, [("payment", "unpaid", "paid"),
                                          ("fulfilment", "shipped", "delivered")])
    notifications.retry_due()

    steps = ["order_placed", "payment_succeeded", "order_shipped", "order_delivered",
             "order_refunded"]
    customer = Notification.objects.filter(order=order, audience="customer")
    assert sorted(customer.values_list("event", "channel")) == sorted(
        (event, channel) for event in steps for channel in ("email", "sms"))
    assert set(customer.values_list("status", flat=True)) == {Status.SENT}
    mails = smtp.to("amina@example.com")
    assert len(mails) == 5 and len(sms.sent) == 5
    shipped = next(m for m in mails if "on its way" in m["Subject"])
    assert "https://track.example.com/G4S-1" in shipped.get_body(("plain",)).get_content()
    refunded = next(m for m in mails if m["Subject"].startswith("Refund"))
    assert "1,200.00" in refunded["Subject"] and "One arrived torn" in (
        refunded.get_body(("plain",)).get_content())
    assert sms.sent[0].recipient == "+254712345678"
    staff_alerts = Notification.objects.filter(order=order, audience="staff")
    assert list(staff_alerts.values_list("event", "recipient")) == [
        ("staff_new_order", "boss@shop.example")]
    assert len(smtp.to("boss@shop.example")) == 1

    timeline = staff.get(f"{page}/change/").content.decode()
    for label in ("Order confirmation", "Payment received", "Order shipped", "Order delivered",
                  "Refund"):
        assert timeline.count(f"{label} emailed to a***@example.com") == 1, label
        assert timeline.count(f"{label} by SMS to +2547") == 1, label
    assert "New order (staff alert) emailed to b***@shop.example" in timeline


def test_a_cancel_says_why_and_a_failed_payment_says_what_to_do(client, sms):
    order = checkout(client)
    with transaction.atomic():
        orders.cancel_order(order, note="Out of stock at our supplier")
    row = order.notifications.get(event="order_cancelled", channel="sms")
    assert notifications.send(row.pk) == Status.SENT
    assert "Out of stock at our supplier" in sms.sent[-1].body


# --- Staff alerts ------------------------------------------------------------------------------


def test_low_stock_alerts_once_per_fall_and_the_digest_once_a_day(client, shelf, boss, sms):
    alert = StaffAlert.objects.get(event="staff_low_stock")
    alert.phones = "0700 000 001"
    alert.save()
    Stock.objects.filter(variant=shelf).update(low_stock_threshold=7)
    checkout(client, quantity=2)  # 10 -> 8: above the threshold
    checkout(client, quantity=1)  # 8 -> 7: falls to it
    checkout(client, quantity=1)  # 7 -> 6: still low, no new alert
    low = Notification.objects.filter(event="staff_low_stock")
    assert list(low.values_list("channel", "recipient")) == [("sms", "+254700000001")]
    assert low.get().context["available"] == 7
    from backoffice.inventory.tasks import detect_low_stock

    detect_low_stock()
    detect_low_stock()
    digest = Notification.objects.filter(event="staff_low_stock_digest")
    assert list(digest.values_list("recipient", flat=True)) == ["boss@shop.example"]
    assert digest.get().context["rows"][0]["sku"] == "KIK"


def test_an_alert_switched_off_or_set_to_people_goes_where_the_merchant_says(boss,
                                                                           django_user_model):
    clerk = django_user_model.objects.create_user("clerk", "clerk@shop.example", "x",
                                                  is_staff=True)
    alert = StaffAlert.objects.get(event="staff_import_failed")
    alert.users.add(clerk)
    alert.emails = "ops@shop.example\n"
    alert.save()
    with transaction.atomic():
        notifications.import_failed(job_id=7, kind="products", file_name="p.csv",
                                    error="Row 2: no SKU")
    assert sorted(Notification.objects.values_list("recipient", flat=True)) == [
        "clerk@shop.example", "ops@shop.example"]
    alert.enabled = False
    alert.save()
    with transaction.atomic():
        notifications.import_failed(job_id=8, kind="products", file_name="p.csv", error="x")
    assert Notification.objects.count() == 2


def test_a_plugin_that_gives_up_alerts_the_staff(boss, register_plugin):
    from backoffice.plugin_host import events
    from backoffice.plugin_host.events import emit_event

    class Broken:
        hookspec_version = ">=1.0,<2"

        @hookimpl
        def order_placed(self, order_id):
            raise ConnectionError("erp.example.com refused the connection")

    register_plugin(Broken(), "erp_sync")
    with transaction.atomic():
        event = emit_event("order_placed", order_id=1, order_number="1", total="1",
                           currency="KES")
    delivery = event.deliveries.get()
    for _ in range(events.MAX_ATTEMPTS):
        type(delivery).objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
        events.deliver(delivery.pk)
    alert = Notification.objects.get(event="staff_plugin_failed")
    assert alert.recipient == "boss@shop.example"
    assert alert.context["plugin"] == "erp_sync" and "refused" in alert.context["error"]


def test_a_merchant_who_buys_from_their_own_store_gets_the_confirmation_and_the_alert(client):
    get_user_model().objects.create_superuser("me", "me@shop.example", "x")
    order = checkout(client, email_address="me@shop.example")
    assert sorted(order.notifications.values_list("event", "recipient")) == [
        ("order_placed", "me@shop.example"), ("staff_new_order", "me@shop.example")]


def test_the_store_warns_when_no_email_channel_is_active():
    from django.core.checks import run_checks

    from backoffice.plugin_host.models import PluginConfig

    assert not [w for w in run_checks(databases=["default"]) if w.id == "backoffice.W201"]
    PluginConfig.objects.filter(identifier="email").update(active=False)
    assert [w.id for w in run_checks(databases=["default"]) if w.id == "backoffice.W201"] == [
        "backoffice.W201"]


def test_staff_edit_a_customers_phone_and_channels_by_the_same_rules():
    from backoffice.customers.admin import CustomerProfileForm
    from backoffice.customers.models import CustomerProfile

    user = get_user_model().objects.create_user("c@example.com", "c@example.com", PASSWORD)
    profile = CustomerProfile.objects.create(user=user)
    form = CustomerProfileForm({"phone": "0712 345 678", "channels": ["sms"], "language": "",
                                "preferences": "{}"}, instance=profile)
    assert form.is_valid(), form.errors
    form.save()
    profile.refresh_from_db()
    assert (profile.phone, profile.notification_channels) == ("+254712345678", ["sms"])
    bad = CustomerProfileForm({"phone": "12", "preferences": "{}"}, instance=profile)
    assert not bad.is_valid() and "valid phone number" in bad.errors["phone"][0]


def test_deciding_an_orders_messages_costs_a_few_queries_in_the_checkout_transaction(
    client, boss, django_assert_max_num_queries,
):
    order = checkout(client)
    order.notifications.all().delete()
    # The switches of both messages, the alert with its people, the superusers (nobody set),
    # one insert (+ the test's savepoint and its release); which plugins are active comes from
    # the query cache.
    with django_assert_max_num_queries(4 + 2), transaction.atomic():
        notifications.order_placed(order)
    assert order.notifications.count() == 2
    from backoffice.plugin_host.models import PluginConfig

    PluginConfig.objects.filter(identifier="email").update(active=False)
    order.notifications.all().delete()
    # No channel: which plugins are active (read again: it just changed), and nothing more.
    with django_assert_max_num_queries(1 + 2), transaction.atomic():
        notifications.order_placed(order)
    assert order.notifications.count() == 0
