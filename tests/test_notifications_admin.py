"""The notifications admin: the outbox (filters, search, resend, a message's page that never
shows a one-time link), the message templates (switches, the wording editor with its default,
preview, test and the check that a broken wording is never saved), the staff alerts, the
order page's timeline and the sidebar."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from cachalot.api import cachalot_disabled
from django.contrib.admin import helpers
from django.contrib.auth.models import Permission
from django.core import mail
from django.test import override_settings
from django.utils import timezone

from backoffice.notifications import rendering, services
from backoffice.notifications.models import (
    MessageTemplate,
    Notification,
    NotificationRule,
    StaffAlert,
    Status,
)
from backoffice.notifications.setup import ensure_rules
from backoffice.orders.models import Order, OrderEvent
from backoffice.plugin_host import services as plugin_services
from backoffice.plugin_host.models import PluginConfig
from backoffice.plugin_host.protocols import DeliveryResult
from backoffice.plugin_host.services import Bound

pytestmark = pytest.mark.django_db

OUTBOX = "/admin/notifications/notification/"
TEMPLATES = "/admin/notifications/notificationrule/"
ALERTS = "/admin/notifications/staffalert/"
ADDRESS = {"first_name": "Wanjiru", "last_name": "Kamau", "line1": "Ngong Road 12",
           "city": "Nairobi", "country": "KE"}


def wording(event: str, channel: str, language: str = "") -> str:
    url = f"{TEMPLATES}wording/{event}/{channel}/"
    return f"{url}?language={language}" if language else url


def make_order(email: str = "wanjiru@example.com") -> Order:
    order = Order.objects.create(
        email=email, phone="+254712345678", currency="KES", subtotal=Decimal("3400.00"),
        shipping_total=Decimal("250.00"), total=Decimal("3650.00"),
        shipping_method_code="flat_rate", shipping_method_name="Nairobi delivery",
        shipping_address=ADDRESS, billing_address=ADDRESS,
    )
    order.number = str(10000 + order.pk)
    order.save(update_fields=["number"])
    return order


def message(**fields) -> Notification:
    defaults = {"event": "order_placed", "event_key": f"k{Notification.objects.count()}",
                "audience": "customer", "channel": "email",
                "recipient": "wanjiru@example.com"}
    return Notification.objects.create(**{**defaults, **fields})


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


class FakeSms:
    code = "sms"
    name = "Fake SMS"
    recipient_kind = "phone"
    sent: list = []

    def send(self, notification, config):
        self.sent.append(notification)
        return DeliveryResult(status="sent", provider_message_id="ATX1")


@pytest.fixture
def sms_channel(monkeypatch):
    """An active SMS channel (the real plugin is configured elsewhere)."""
    sms = FakeSms()
    sms.sent = []
    email_channels = plugin_services.notification_channels

    monkeypatch.setattr(plugin_services, "notification_channels",
                        lambda: [*email_channels(), sms])
    real = plugin_services.notification_channel

    def channel(code):
        return Bound(plugin="fake_sms", provider=sms, config={}) if code == "sms" else real(code)

    monkeypatch.setattr(plugin_services, "notification_channel", channel)
    return sms


@pytest.fixture
def shipped(tmp_path, settings):
    """Shipped defaults for order_placed that these tests control (found before the app's)."""
    folder = tmp_path / "notifications" / "en" / "order_placed"
    folder.mkdir(parents=True)
    (folder / "subject.txt").write_text("Order {{ order_number }} confirmed\n")
    (folder / "email.txt").write_text("Hello {{ customer_name }}, thanks for order "
                                      "{{ order_number }} at {{ store_name }}.\n")
    (folder / "email.html").write_text("<p>Hello {{ customer_name }}</p>\n")
    (folder / "sms.txt").write_text("{{ store_name }}: order {{ order_number }} received.\n")
    templates = [{**settings.TEMPLATES[0],
                  "DIRS": [tmp_path, *settings.TEMPLATES[0]["DIRS"]]}]
    with override_settings(TEMPLATES=templates):
        yield folder


# --- The outbox ---------------------------------------------------------------------------------


def test_the_outbox_lists_each_message_with_its_status_order_and_cost(staff_client):
    order = make_order()
    now = timezone.now()
    message(order=order, status=Status.SENT, sent_at=now, attempts=1)
    message(channel="sms", recipient="+254712345678", order=order, status=Status.DELIVERED,
            sent_at=now, delivered_at=now + timedelta(minutes=1), cost="KES 0.8000",
            attempts=1)
    message(event="staff_low_stock", audience="staff", recipient="boss@example.com",
            status=Status.FAILED, error="Boom", attempts=6)

    html = staff_client.get(OUTBOX).content.decode()
    assert "Order confirmation" in html and "Low stock" in html and "staff alert" in html
    assert "wanjiru@example.com" in html and "+254712345678" in html
    assert f'href="/admin/orders/order/{order.pk}/change/"' in html and f"#{order.number}" in html
    assert "KES 0.8000" in html
    for label, colour in (("Sent", "bg-primary-100"), ("Delivered", "bg-green-100"),
                          ("Failed", "bg-red-100")):
        assert label in html and colour in html


@pytest.mark.parametrize(("query", "shown", "hidden"), [
    ("event=order_shipped", ["shipped@example.com"], ["placed@example.com"]),
    ("channel=sms", ["+254712345678"], ["placed@example.com"]),
    ("status__exact=failed", ["shipped@example.com"], ["placed@example.com"]),
    ("audience__exact=staff", ["boss@example.com"], ["placed@example.com"]),
    ("created_at_from=2001-01-01&created_at_to=2001-01-31", ["old@example.com"],
     ["placed@example.com"]),
])
def test_the_outbox_filters(staff_client, query, shown, hidden):
    message(recipient="placed@example.com", status=Status.SENT)
    message(event="order_shipped", recipient="shipped@example.com", status=Status.FAILED)
    message(channel="sms", recipient="+254712345678")
    message(event="staff_new_order", audience="staff", recipient="boss@example.com")
    old = message(recipient="old@example.com")
    Notification.objects.filter(pk=old.pk).update(
        created_at=timezone.make_aware(timezone.datetime(2001, 1, 15, 12)))

    response = staff_client.get(f"{OUTBOX}?{query}")
    assert response.status_code == 200
    html = response.content.decode()
    for recipient in shown:
        assert recipient in html
    for recipient in hidden:
        assert recipient not in html


def test_the_outbox_searches_by_recipient_phone_and_order_number(staff_client):
    order = make_order()
    message(order=order, recipient="first@example.com")
    message(recipient="second@example.com")
    message(channel="sms", recipient="+254712345678")

    def found(term: str) -> str:
        return staff_client.get(OUTBOX, {"q": term}).content.decode()

    html = found("second@")
    assert "second@example.com" in html and "first@example.com" not in html
    html = found(f"#{order.number}")
    assert "first@example.com" in html and "second@example.com" not in html
    html = found("0712 345 678")  # as a merchant types it
    assert "+254712345678" in html and "first@example.com" not in html


def test_the_outbox_takes_the_same_queries_for_few_or_many_messages(
    staff_client, django_assert_max_num_queries
):
    order = make_order()
    for i in range(40):
        message(order=order, recipient=f"c{i}@example.com", status=Status.SENT)
    # The session and user, the sidebar's three badges, the active channels (for the channel
    # filter and the delivery-report addresses), the count and the page; on PostgreSQL an
    # unfiltered list first asks the planner's estimate (+1).
    with cachalot_disabled(), django_assert_max_num_queries(9):
        assert staff_client.get(OUTBOX).status_code == 200
    with cachalot_disabled(), django_assert_max_num_queries(8):
        assert staff_client.get(f"{OUTBOX}?status__exact=sent&channel=email").status_code == 200


def test_resend_queues_messages_again_and_refuses_one_that_held_a_link(staff_client):
    failed = message(status=Status.FAILED, error="Mailbox full", attempts=6)
    sent = message(recipient="b@example.com", status=Status.SENT)
    reset = message(event="password_reset", recipient="c@example.com", sensitive=True,
                    status=Status.SENT)
    waiting = message(recipient="d@example.com", status=Status.QUEUED)

    response = staff_client.post(OUTBOX, {
        "action": "resend", helpers.ACTION_CHECKBOX_NAME: [failed.pk, sent.pk, reset.pk,
                                                           waiting.pk],
        "index": 0,
    }, follow=True)
    shown = messages_of(response)
    assert "2 messages queued to be sent again." in shown
    assert any(m.startswith("1 message refused: it held a one-time link") for m in shown)
    assert "1 message left as it is: it is queued or being sent already." in shown
    failed.refresh_from_db()
    assert (failed.status, failed.attempts, failed.error, failed.resends) == (
        Status.QUEUED, 0, "", 1)
    assert Notification.objects.get(pk=sent.pk).status == Status.QUEUED
    assert Notification.objects.get(pk=reset.pk).status == Status.SENT


def test_resend_from_the_message_page_asks_then_queues(staff_client):
    failed = message(status=Status.FAILED, error="Mailbox full")
    page = f"{OUTBOX}{failed.pk}/change/"
    assert f"{OUTBOX}{failed.pk}/resend/" in staff_client.get(page).content.decode()
    assert "The message is queued again" in staff_client.get(
        f"{OUTBOX}{failed.pk}/resend/").content.decode()
    assert Notification.objects.get(pk=failed.pk).status == Status.FAILED  # a GET only asks

    response = staff_client.post(f"{OUTBOX}{failed.pk}/resend/", follow=True)
    assert response.redirect_chain == [(page, 302)]
    assert messages_of(response) == ["1 message queued to be sent again."]
    assert Notification.objects.get(pk=failed.pk).status == Status.QUEUED
    # Queued now: the page offers no resend.
    assert f"{OUTBOX}{failed.pk}/resend/" not in staff_client.get(page).content.decode()


def test_a_clerk_who_may_only_view_cannot_resend(client, django_user_model):
    clerk = django_user_model.objects.create_user("clerk", password="pw-123-long",
                                                  is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_notification"))
    client.force_login(clerk)
    failed = message(status=Status.FAILED)
    assert client.get(OUTBOX).status_code == 200
    client.post(OUTBOX, {"action": "resend", helpers.ACTION_CHECKBOX_NAME: [failed.pk],
                         "index": 0})
    assert client.post(f"{OUTBOX}{failed.pk}/resend/").status_code == 403
    assert Notification.objects.get(pk=failed.pk).status == Status.FAILED
    assert client.get(f"{OUTBOX}add/").status_code == 403


def test_a_message_page_shows_every_field_the_text_and_the_html_in_a_sandbox(staff_client):
    order = make_order()
    sent = message(order=order, status=Status.SENT, subject="Order 10001 confirmed",
                   body="Hello Wanjiru,\nthanks.", html='<p>Hello <b>Wanjiru</b></p>',
                   provider_message_id="<n1@shop>", context={"reason": "none"},
                   sent_at=timezone.now(), attempts=1)
    response = staff_client.get(f"{OUTBOX}{sent.pk}/change/")
    html = response.content.decode()
    assert response.status_code == 200
    for text in ("Order confirmation", "wanjiru@example.com", "Order 10001 confirmed",
                 "Hello Wanjiru,\nthanks.", "&lt;n1@shop&gt;", f"#{order.number}",
                 "&quot;reason&quot;"):
        assert text in html, text
    # The HTML is shown only inside a frame that runs nothing.
    assert 'sandbox=""' in html
    assert 'srcdoc="&lt;p&gt;Hello &lt;b&gt;Wanjiru&lt;/b&gt;&lt;/p&gt;"' in html
    assert "<b>Wanjiru</b>" not in html
    # Read-only: no input of the message, no save button.
    assert 'name="recipient"' not in html and 'name="_save"' not in html


def test_the_page_of_a_message_that_held_a_link_never_shows_it(staff_client):
    link = "https://shop.example.com/reset/s3cr3t-token"
    reset = message(event="password_reset", sensitive=True, status=Status.QUEUED,
                    subject="Reset your password", body=f"Open {link}",
                    html=f'<a href="{link}">Reset</a>',
                    context={"customer_name": "Wanjiru", "link": link})
    html = staff_client.get(f"{OUTBOX}{reset.pk}/change/").content.decode()
    assert "s3cr3t-token" not in html
    assert "which staff never see" in html
    assert "Reset your password" in html and "Wanjiru" in html
    assert "[hidden: one-time link]" in html


def test_a_message_not_sent_yet_shows_what_it_would_say(staff_client, shipped):
    order = make_order()
    waiting = message(order=order, channel="sms", recipient="+254712345678")
    html = staff_client.get(f"{OUTBOX}{waiting.pk}/change/").content.decode()
    assert "Not sent yet" in html
    assert f"order {order.number} received." in html


def test_the_outbox_shows_where_delivery_reports_go(staff_client, sms_channel):
    html = staff_client.get(OUTBOX).content.decode()
    assert services.delivery_report_url("sms") in html
    assert "Fake SMS" in html


def test_the_delivery_report_address_is_kept_from_staff_who_do_not_set_up_plugins(
    client, django_user_model, sms_channel
):
    clerk = django_user_model.objects.create_user("clerk", password="pw-123-long",
                                                  is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_notification"))
    client.force_login(clerk)
    assert services.delivery_report_url("sms") not in client.get(OUTBOX).content.decode()


# --- Message templates: the list and its switches ---------------------------------------------


def test_the_template_list_shows_every_message_on_each_channel_with_its_switch(staff_client):
    ensure_rules()
    MessageTemplate.objects.create(event="order_shipped", channel="sms", text="Shipped!")
    response = staff_client.get(TEMPLATES)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Message templates" in html
    assert "Order confirmation" in html and "Low stock, daily digest" in html
    rows = list(response.context["cl"].result_list)
    shown = {(r.event, r.channel) for r in rows}
    assert ("order_placed", "email") in shown and ("order_placed", "sms") in shown
    # Account emails go by email only: no SMS row to switch.
    assert ("password_reset", "email") in shown and ("password_reset", "sms") not in shown
    assert rows[0].event == "order_placed"  # the catalogue's order, not the alphabet's
    worded = next(r for r in rows if (r.event, r.channel) == ("order_shipped", "sms"))
    assert worded.worded
    assert "Yours" in html and "Default" in html
    assert wording("order_placed", "email") in html


def test_switches_are_turned_off_in_the_list(staff_client):
    ensure_rules()
    response = staff_client.get(TEMPLATES)
    formset = response.context["cl"].formset
    data = {key: value for key, value in {
        "form-TOTAL_FORMS": str(formset.total_form_count()),
        "form-INITIAL_FORMS": str(formset.initial_form_count()), "_save": "Save",
    }.items()}
    target = NotificationRule.objects.get(event="order_shipped", channel="sms")
    reset = NotificationRule.objects.get(event="password_reset", channel="email")
    for i, form in enumerate(formset.forms):
        data[f"form-{i}-id"] = str(form.instance.pk)
        if form.instance.pk != target.pk:
            data[f"form-{i}-enabled"] = "on"
    # An account email's switch cannot be turned off (it is left out of the post: off).
    data.pop(f"form-{[f.instance.pk for f in formset.forms].index(reset.pk)}-enabled")

    response = staff_client.post(TEMPLATES, data)
    assert response.status_code == 302
    assert not NotificationRule.objects.get(pk=target.pk).enabled
    assert NotificationRule.objects.get(pk=reset.pk).enabled
    assert NotificationRule.objects.filter(enabled=False).count() == 1


def test_a_channel_switched_on_later_gets_its_rows_in_the_list(staff_client, sms_channel):
    NotificationRule.objects.all().delete()
    staff_client.get(TEMPLATES)
    assert NotificationRule.objects.filter(channel="sms").count() > 0
    assert NotificationRule.objects.filter(event="order_placed").count() == 2


# --- Message templates: the wording editor ------------------------------------------------------


def test_the_editor_starts_from_the_default_shown_beside_the_form(staff_client, shipped):
    response = staff_client.get(wording("order_placed", "email"))
    assert response.status_code == 200
    form = response.context["form"]
    assert form["subject"].value() == "Order {{ order_number }} confirmed"
    assert "{{ customer_name }}" in form["text"].value()
    html = response.content.decode()
    assert 'data-default="subject"' in html and 'data-default="html"' in html
    # A preview from the start, with sample data (there are no orders).
    assert response.context["preview"].subject == "Order 1042 confirmed"
    assert "Sample data." in html
    assert "Send a test to me (boss@example.com)" in html


def test_the_preview_uses_the_newest_order_and_counts_sms_parts(staff_client, shipped):
    order = make_order()
    response = staff_client.post(wording("order_placed", "sms"), {
        "text": "{{ order_number }} " + "é" * 10 + " 😀", "_preview": "1"})
    assert response.status_code == 200
    preview = response.context["preview"]
    assert preview.text.startswith(order.number)
    sms = response.context["sms"]
    assert (sms.encoding, sms.parts) == ("UCS-2", 1)
    html = response.content.decode()
    assert "UCS-2" in html and f"Order #{order.number}, the newest" in html
    assert not MessageTemplate.objects.exists()  # a preview saves nothing

    response = staff_client.post(wording("order_placed", "sms"), {
        "text": "x" * 200, "_preview": "1"})
    assert (response.context["sms"].characters, response.context["sms"].parts,
            response.context["sms"].encoding) == (200, 2, "GSM-7")
    assert "200 characters, 2 SMS parts (GSM-7)" in response.content.decode()


@pytest.mark.parametrize(("part", "broken", "error"), [
    ("text", "{% if paid %}Paid", "Unclosed tag"),
    ("subject", "Order {{ order_number|nosuchfilter }}", "Invalid filter: 'nosuchfilter'"),
    ("html", "<p>{% for line in lines %}{{ line.name }}</p>", "Unclosed tag"),
])
def test_a_wording_that_cannot_render_is_never_saved(staff_client, shipped, part, broken,
                                                      error):
    data = {"subject": "Order {{ order_number }}", "text": "Hello", "html": "<p>Hi</p>",
            part: broken, "_save": "1"}
    response = staff_client.post(wording("order_placed", "email"), data)
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert list(errors) == [part]
    assert error in errors[part][0]
    assert "This cannot be used" in response.content.decode()
    assert not MessageTemplate.objects.exists()


def test_a_saved_wording_is_the_one_messages_use(staff_client, shipped, django_user_model):
    response = staff_client.post(wording("order_placed", "email"), {
        "subject": "Asante! Order {{ order_number }}",
        "text": "Hello {{ customer_name }}, thanks for order {{ order_number }} at "
                "{{ store_name }}.",  # the default, as it was: stays blank (follows it)
        "html": "<p>Karibu {{ customer_name }}</p>", "_save": "1",
    }, follow=True)
    assert response.redirect_chain[-1][0].endswith(wording("order_placed", "email", "en"))
    assert "uses your wording" in messages_of(response)[0]
    row = MessageTemplate.objects.get(event="order_placed", channel="email", language="en")
    assert (row.subject, row.text, row.html) == (
        "Asante! Order {{ order_number }}", "", "<p>Karibu {{ customer_name }}</p>")
    assert row.updated_by == django_user_model.objects.get(username="boss")

    rendered = rendering.render("order_placed", "email", "email",
                                {"order_number": "7", "customer_name": "Amina",
                                 "store_name": "Duka"})
    assert rendered.subject == "Asante! Order 7"
    assert rendered.html == "<p>Karibu Amina</p>"
    assert rendered.text == "Hello Amina, thanks for order 7 at Duka."  # the default's

    # The list says whose wording it is; the editor starts from it.
    assert staff_client.get(wording("order_placed", "email")).context["form"][
        "subject"].value() == "Asante! Order {{ order_number }}"


def test_restoring_the_default_removes_the_wording(staff_client, shipped):
    MessageTemplate.objects.create(event="order_placed", channel="sms", text="Mine")
    response = staff_client.post(wording("order_placed", "sms"), {"_restore": "1"},
                                 follow=True)
    assert messages_of(response) == ["The default wording is used again."]
    assert not MessageTemplate.objects.exists()
    # Saving the default as it is stores nothing either.
    staff_client.post(wording("order_placed", "sms"), {
        "text": "{{ store_name }}: order {{ order_number }} received.", "_save": "1"})
    assert not MessageTemplate.objects.exists()


def test_a_wording_in_another_language_falls_back_to_the_stores(staff_client, shipped):
    response = staff_client.get(wording("order_placed", "sms", "sw"))
    assert response.context["language"] == "sw"
    assert response.context["form"]["text"].value() == (
        "{{ store_name }}: order {{ order_number }} received.")
    staff_client.post(wording("order_placed", "sms", "sw"), {
        "text": "{{ store_name }}: oda {{ order_number }} imepokelewa.", "_save": "1"})
    assert rendering.render("order_placed", "sms", "phone", {"order_number": "9",
                                                            "store_name": "Duka"},
                            "sw").text == "Duka: oda 9 imepokelewa."
    assert rendering.render("order_placed", "sms", "phone", {"order_number": "9",
                                                            "store_name": "Duka"},
                            "en").text == "Duka: order 9 received."


def test_send_a_test_to_me_emails_the_preview(staff_client, shipped):
    PluginConfig.objects.update_or_create(identifier="email", defaults={"active": True})
    make_order()
    response = staff_client.post(wording("order_placed", "email"), {
        "subject": "Order {{ order_number }} is in", "text": "Hi {{ customer_name }}",
        "html": "<p>Hi {{ customer_name }}</p>", "_test": "1",
    }, follow=True)
    assert response.status_code == 200
    assert "Test sent to boss@example.com." in messages_of(response)
    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    assert sent.to == ["boss@example.com"]
    assert sent.subject.startswith("[Test] Order 1") and sent.subject.endswith(" is in")
    assert sent.body == "Hi Wanjiru Kamau"
    assert sent.alternatives[0][0] == "<p>Hi Wanjiru Kamau</p>"
    assert not MessageTemplate.objects.exists()  # a test saves nothing


def test_a_broken_wording_is_not_sent_as_a_test(staff_client, shipped):
    response = staff_client.post(wording("order_placed", "email"), {
        "subject": "{% if %}", "text": "x", "html": "", "_test": "1"})
    assert "subject" in response.context["form"].errors
    assert mail.outbox == []


def test_an_sms_test_goes_to_the_number_typed(staff_client, shipped, sms_channel):
    response = staff_client.post(wording("order_placed", "sms"), {
        "text": "Test {{ order_number }}", "test_phone": "0712 345 678", "_test": "1"})
    assert "Test sent to +254712345678." in messages_of(response)
    assert [(m.recipient, m.body) for m in sms_channel.sent] == [
        ("+254712345678", "Test 1042")]

    response = staff_client.post(wording("order_placed", "sms"), {
        "text": "Test", "test_phone": "12", "_test": "1"})
    assert "not a valid phone number" in response.context["form"].errors["test_phone"][0]
    assert len(sms_channel.sent) == 1


def test_an_sms_test_says_when_the_channel_is_not_active(staff_client, shipped):
    response = staff_client.post(wording("order_placed", "sms"), {
        "text": "Test", "test_phone": "+254712345678", "_test": "1"})
    assert "The SMS channel is not active" in response.context["form"].non_field_errors()[0]


def test_the_switch_is_turned_on_and_off_on_the_editor(staff_client, shipped):
    ensure_rules()
    response = staff_client.post(wording("order_placed", "sms"),
                                 {"_switch": "1", "enabled": "0"}, follow=True)
    assert "is not sent by SMS any more" in messages_of(response)[0]
    assert not NotificationRule.objects.get(event="order_placed", channel="sms").enabled
    staff_client.post(wording("order_placed", "sms"), {"_switch": "1", "enabled": "1"})
    assert NotificationRule.objects.get(event="order_placed", channel="sms").enabled


def test_unknown_messages_and_channels_are_not_found(staff_client):
    assert staff_client.get(wording("nothing", "email")).status_code == 404
    assert staff_client.get(wording("order_placed", "pigeon")).status_code == 404
    assert staff_client.get(wording("password_reset", "sms")).status_code == 404


def test_a_clerk_without_the_template_permission_can_look_but_not_change(
    client, django_user_model, shipped
):
    clerk = django_user_model.objects.create_user("clerk", email="clerk@example.com",
                                                  password="pw-123-long", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_notificationrule"))
    client.force_login(clerk)
    response = client.get(wording("order_placed", "email"))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="_save"' not in html and 'name="_test"' not in html
    assert response.context["form"].fields["subject"].disabled
    for button in ("_save", "_test", "_restore"):
        response = client.post(wording("order_placed", "email"),
                               {"subject": "Mine", "text": "x", button: "1"})
        assert response.status_code == 403, button
    assert not MessageTemplate.objects.exists() and mail.outbox == []


def test_the_rule_page_opens_its_wording(staff_client):
    ensure_rules()
    rule = NotificationRule.objects.get(event="order_shipped", channel="email")
    response = staff_client.get(f"{TEMPLATES}{rule.pk}/change/")
    assert response.status_code == 302
    assert response["Location"] == wording("order_shipped", "email")


# --- Staff alerts -------------------------------------------------------------------------------


def test_staff_alerts_say_who_hears_and_that_nobody_means_the_superusers(staff_client):
    ensure_rules()
    html = staff_client.get(ALERTS).content.decode()
    assert "New order" in html and "Plugin delivery failed for good" in html
    assert "goes to the superusers" in html
    assert "Nobody set: the superusers" in html


def test_a_staff_alert_checks_every_line_and_stores_numbers_in_e164(staff_client,
                                                                     django_user_model):
    ensure_rules()
    alert = StaffAlert.objects.get(event="staff_new_order")
    clerk = django_user_model.objects.create_user("clerk", email="clerk@example.com",
                                                  is_staff=True)
    customer = django_user_model.objects.create_user("customer", email="c@example.com")
    url = f"{ALERTS}{alert.pk}/change/"

    response = staff_client.post(url, {
        "enabled": "on", "users": [customer.pk],
        "emails": "ops@example.com\nnot-an-email\n\nalso@bad",
        "phones": "0712 345 678\n12345",
    })
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "users" in errors  # not staff: not a choice
    assert errors["emails"] == [
        "Line 2 (not-an-email): Enter a valid email address.",
        "Line 4 (also@bad): Enter a valid email address.",
    ]
    assert errors["phones"][0].startswith("Line 2 (12345): '12345' is not a valid phone number")

    response = staff_client.post(url, {
        "enabled": "on", "users": [clerk.pk],
        "emails": " ops@example.com \nOPS@example.com\nsupport@example.com",
        "phones": "0712 345 678\n+254 733 000 111",
    })
    assert response.status_code == 302
    alert.refresh_from_db()
    assert alert.emails == "ops@example.com\nsupport@example.com"
    assert alert.phones == "+254712345678\n+254733000111"
    assert list(alert.users.all()) == [clerk]
    assert services.staff_recipients("staff_new_order") == [
        ("email", "clerk@example.com"), ("email", "ops@example.com"),
        ("email", "support@example.com"), ("phone", "+254712345678"),
        ("phone", "+254733000111"),
    ]


def test_staff_alerts_cannot_be_added_or_deleted(staff_client):
    ensure_rules()
    alert = StaffAlert.objects.first()
    assert staff_client.get(f"{ALERTS}add/").status_code == 403
    assert staff_client.get(f"{ALERTS}{alert.pk}/delete/").status_code == 403


# --- The order page and the sidebar ----------------------------------------------------------


def test_the_order_timeline_lists_its_messages_in_time_order(staff_client):
    order = make_order()
    placed = OrderEvent.objects.create(order=order, kind="placed")
    sent = message(order=order, status=Status.SENT, sent_at=timezone.now())
    sms = message(order=order, channel="sms", recipient="+254712345678",
                  status=Status.DELIVERED)
    note = OrderEvent.objects.create(order=order, kind="note", note="Called the customer")
    later = timezone.now() + timedelta(minutes=5)
    OrderEvent.objects.filter(pk=note.pk).update(created_at=later)
    Notification.objects.filter(pk=sms.pk).update(created_at=later + timedelta(minutes=1))

    html = staff_client.get(f"/admin/orders/order/{order.pk}/change/").content.decode()
    email_line = "Order confirmation emailed to w***@example.com"
    sms_line = "Order confirmation by SMS to +2547…"
    assert email_line in html and sms_line in html
    assert f"{OUTBOX}{sent.pk}/change/" in html and f"{OUTBOX}{sms.pk}/change/" in html
    assert "Sent" in html and "Delivered" in html
    assert placed.get_kind_display() in html
    assert (html.index(email_line) < html.index("Called the customer")
            < html.index(sms_line))


def test_the_sidebar_lists_the_notification_pages(staff_client):
    html = staff_client.get("/admin/").content.decode()
    for label, url in (("Notifications", OUTBOX), ("Message templates", TEMPLATES),
                       ("Staff alerts", ALERTS)):
        assert label in html and url in html
