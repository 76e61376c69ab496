"""Accounts a customer controls (issue 16): closing the account (nothing personal left in any
table, orders and totals intact), exporting its data, and its sessions."""

from __future__ import annotations

import json
import uuid

import pytest
import responses
from django.apps import apps
from django.contrib.admin import helpers
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core import mail
from django.db import models
from django.test import Client

from backoffice import roles
from backoffice.audit.models import AuditAction, AuditEntry
from backoffice.catalog.models import Product, Variant
from backoffice.customers import privacy
from backoffice.customers.models import CustomerProfile, TokenFamily
from backoffice.customers.services import AccountError, register_customer, start_session
from backoffice.hookspecs import hookimpl
from backoffice.identity.models import ExternalIdentity, IdentityProvider
from backoffice.inventory.services import Actor, adjust_stock
from backoffice.notifications import services as notifications
from backoffice.notifications.models import Notification, Status
from backoffice.orders import services as orders
from backoffice.orders.models import Order
from backoffice.payments.models import Payment, PaymentEvent
from backoffice.permissions import ActionNotPermitted
from backoffice.plugin_host.models import PluginEvent
from backoffice.plugin_host.protocols import DeliveryResult
from backoffice.plugin_host.services import activate_plugins, update_plugin_config

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-9"
EMAIL = "zawadi.quillfeather@privacy-test.example"
PHONE = "0798 765 432"  # +254798765432; M-Pesa writes 254798765432
FIRST, LAST = "Zawadika", "Quillfeather"
HOME = {"first_name": FIRST, "last_name": LAST, "company": "Quillco Widgets",
        "line1": "17 Zebrafinch Lane", "line2": "Flat Marmalade 9", "city": "Nairobi",
        "country": "KE", "phone": PHONE}
BILLING = {**HOME, "first_name": "Wambuiqa", "line1": "88 Ocelot Boulevard", "line2": ""}
# What must be found nowhere once the account is closed (the phone by its national digits,
# which every written form contains).
PERSONAL = [EMAIL, "798765432", "798 765 432", FIRST, LAST, "Wambuiqa", "Quillco Widgets",
            "Zebrafinch Lane", "Marmalade", "Ocelot Boulevard", "QuillBrowser"]
DARAJA = "https://sandbox.safaricom.co.ke"
MPESA_TOKEN = "y" * 32
CHECKOUT_ID = "ws_CO_071220261020363925"


@pytest.fixture(autouse=True)
def shop(settings):
    settings.STORE_CURRENCY = "KES"
    settings.PUBLIC_URL = "https://shop.example.com"
    activate_plugins(["flat_rate_shipping", "manual_payment", "email"])
    update_plugin_config(identifier="mpesa", active=True, changes={
        "consumer_key": "ck", "consumer_secret": "cs", "shortcode": "174379",
        "passkey": "passkey", "callback_token": MPESA_TOKEN})
    product = Product.objects.create(name="Kikoy towel", slug="kikoy")
    towel = Variant.objects.create(product=product, sku="KIK", name="Blue", price="1200.00")
    adjust_stock(variant_id=towel.pk, quantity_change=20)
    return towel


def api(client, method, url, body=None, token=None, **extra):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    data = json.dumps(body) if body is not None else ""
    return client.generic(method, f"/api/v1{url}", data, content_type="application/json",
                          **headers, **extra)


def sign_up(client, email=EMAIL, **extra) -> str:
    response = api(client, "POST", "/auth/register", {
        "email": email, "password": PASSWORD, "first_name": FIRST, "last_name": LAST,
        "phone": PHONE, **extra})
    assert response.status_code == 201, response.content
    return response.json()["access_token"]


def log_in(client, email=EMAIL, agent="QuillBrowser/7.3") -> dict:
    response = api(client, "POST", "/auth/login", {"email": email, "password": PASSWORD},
                   HTTP_USER_AGENT=agent)
    assert response.status_code == 200, response.content
    return response.json()


def buy(client, token=None, *, email=EMAIL, payment_method="manual") -> Order:
    headers = {}
    if token is None:
        headers["HTTP_X_CART_TOKEN"] = api(client, "POST", "/cart").json()["token"]
    assert api(client, "POST", "/cart/lines", {"sku": "KIK", "quantity": 2}, token,
               **headers).status_code == 200
    response = api(client, "POST", "/checkout", {
        "shipping_method": "flat_rate", "shipping_address": HOME, "billing_address": BILLING,
        "payment_method": payment_method, "email": email, "phone": PHONE,
        "note": f"Ring {FIRST} at the gate",
    }, token, HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()), **headers)
    assert response.status_code == 201, response.content
    return Order.objects.get(number=response.json()["number"])


def pay_by_mpesa(client, order: Order, token: str) -> None:
    """The real M-Pesa plugin, Daraja answered at the HTTP level: the push carries the payer's
    number, the callback (stored as it came) has it as a JSON number."""
    responses.add(responses.GET, f"{DARAJA}/oauth/v1/generate",
                  json={"access_token": "tok", "expires_in": "3599"})
    responses.add(responses.POST, f"{DARAJA}/mpesa/stkpush/v1/processrequest", json={
        "MerchantRequestID": "1-2-3", "CheckoutRequestID": CHECKOUT_ID, "ResponseCode": "0",
        "ResponseDescription": "Accepted", "CustomerMessage": "Accepted"})
    responses.add(responses.POST, f"{DARAJA}/mpesa/stkpushquery/v1/query", json={
        "ResponseCode": "0", "ResponseDescription": "Accepted", "MerchantRequestID": "1-2-3",
        "CheckoutRequestID": CHECKOUT_ID, "ResultCode": "0", "ResultDesc": "Processed"})
    started = api(client, "POST", f"/orders/{order.number}/payments",
                  {"provider": "mpesa", "phone": PHONE}, token)
    assert started.status_code == 201, started.content
    callback = json.dumps({"Body": {"stkCallback": {
        "MerchantRequestID": "1-2-3", "CheckoutRequestID": CHECKOUT_ID, "ResultCode": 0,
        "ResultDesc": "The service request is processed successfully.",
        "CallbackMetadata": {"Item": [
            {"Name": "Amount", "Value": "AMOUNT"}, {"Name": "MpesaReceiptNumber",
                                                    "Value": "QWE7RT61SV"},
            {"Name": "TransactionDate", "Value": 20261207102115},
            {"Name": "PhoneNumber", "Value": 254798765432}]}}}}).replace(
        '"AMOUNT"', str(int(order.total)))
    assert client.post(f"/api/v1/payments/webhooks/mpesa/?token={MPESA_TOKEN}", callback,
                       content_type="application/json").status_code == 200


def personal_leftovers(strings: list[str]) -> list[str]:
    """Every text or JSON value, in every table of every installed app, that holds one of
    ``strings`` (case-insensitive): ``"app.Model.field #pk: value"``."""
    needles = [s.lower() for s in strings]
    found = []
    for model in apps.get_models(include_auto_created=True):
        fields = [f for f in model._meta.concrete_fields
                  if isinstance(f, models.CharField | models.TextField | models.JSONField)]
        if not fields or model._meta.proxy:
            continue
        for row in model._base_manager.values_list("pk", *(f.attname for f in fields)):
            for field, value in zip(fields, row[1:], strict=True):
                text = (json.dumps(value, default=str) if isinstance(field, models.JSONField)
                        else str(value or "")).lower()
                if any(needle in text for needle in needles):
                    found.append(f"{model._meta.label}.{field.name} #{row[0]}: {text[:200]}")
    return found


# --- Closing an account -----------------------------------------------------------------------


class Listener:
    """A plugin told of customers and orders: its events' payloads name the customer."""

    hookspec_version = ">=1.0,<2"

    @hookimpl
    def customer_registered(self, email):
        pass

    @hookimpl
    def order_placed(self, customer):
        pass

    @hookimpl
    def order_status_changed(self, customer):
        pass


def link_sign_in(user) -> ExternalIdentity:
    """A Google account linked to the customer (as an OpenID Connect sign-in leaves it)."""
    google = IdentityProvider.objects.create(
        name="Google", slug="google", issuer="https://accounts.google.com", client_id="shop",
        for_customers=True, storefront_redirect_uris="https://shop.example/cb")
    return ExternalIdentity.objects.create(user=user, provider=google,
                                           issuer=google.issuer, subject="10769150350006150715",
                                           email=user.email)


@responses.activate
def test_closing_an_account_leaves_nothing_personal_in_any_table_and_keeps_the_books(
    client, staff_client, register_plugin, django_capture_on_commit_callbacks,
):
    register_plugin(Listener(), "listener")
    with django_capture_on_commit_callbacks(execute=True):
        token = sign_up(client)
        user = get_user_model().objects.get(username=EMAIL)
        CustomerProfile.objects.filter(user=user).update(
            preferences={"size": "M", "nickname": FIRST}, notification_channels=["email"])
        assert api(client, "POST", "/me/addresses", HOME, token).status_code == 201
        order = buy(client, token, payment_method="mpesa")
        pay_by_mpesa(client, order, token)
        orders.add_note(order, f"Called {FIRST} on +254 798 765 432 about the gate.",
                        actor=Actor(label="support"))
        assert api(client, "POST", "/products/kikoy/reviews",
                   {"rating": 5, "comment": f"{FIRST} says: soft and thick."},
                   token).status_code == 201
        # Their email is confirmed: a guest order placed with it afterwards is theirs too.
        CustomerProfile.objects.filter(user=user).update(email_verified_at=order.created_at)
        guest_order = buy(Client())
        second = log_in(client)
        api(client, "POST", "/cart/lines", {"sku": "KIK", "quantity": 1}, token)  # a live cart
        link_sign_in(user)
    LogEntry.objects.log_actions(
        user_id=get_user_model().objects.get(username="boss").pk, queryset=[user],
        action_flag=CHANGE, change_message=f"Changed the name of {FIRST} {LAST}.")
    order.refresh_from_db()
    lines_before = list(order.lines.values_list("sku", "quantity", "unit_price", "total"))
    totals_before = (order.subtotal, order.shipping_total, order.total, order.payment_status)
    assert order.payment_status == "paid" and PaymentEvent.objects.filter(
        payload__icontains="798765432").exists()
    assert PluginEvent.objects.filter(hook="order_placed").count() == 2
    # The scan finds them wherever they are before the account is closed.
    before = {found.split(".")[1] for found in personal_leftovers(PERSONAL)}
    assert before >= {"User", "CustomerProfile", "Address", "TokenFamily", "Order", "OrderEvent",
                      "Payment", "PaymentEvent", "Notification", "PluginEvent", "Review",
                      "StockMovement", "LogEntry", "ExternalIdentity"}, before

    with django_capture_on_commit_callbacks(execute=True):
        response = api(client, "DELETE", "/me", {"password": PASSWORD}, second["access_token"])
    assert response.status_code == 204, response.content

    # The confirmation went to the old address, once; then its row forgot it.
    closed_mails = [m for m in mail.outbox if "account is closed" in m.subject]
    assert len(closed_mails) == 1 and closed_mails[0].to == [EMAIL]
    assert FIRST in closed_mails[0].body
    confirmation = Notification.objects.get(event="account_closed")
    assert confirmation.status == Status.SENT and confirmation.recipient.startswith("erased:")
    assert confirmation.context == {} and FIRST not in confirmation.body

    assert personal_leftovers(PERSONAL) == []

    # The books: number, lines, totals, payment, country.
    order.refresh_from_db()
    assert list(order.lines.values_list("sku", "quantity", "unit_price", "total")) == lines_before
    assert (order.subtotal, order.shipping_total, order.total, order.payment_status) == \
        totals_before
    assert order.user_id == user.pk and order.email == "" and order.phone == ""
    assert order.shipping_address["country"] == order.billing_address["country"] == "KE"
    payment = Payment.objects.get(order=order)
    assert (payment.amount, payment.status, payment.provider_payment_id) == (
        order.total, "succeeded", "QWE7RT61SV")
    assert Order.objects.get(pk=guest_order.pk).email == ""
    # The user row stays, pointing at nobody; every session is over; the email is free.
    user.refresh_from_db()
    assert (user.username, user.is_active, user.has_usable_password()) == (
        f"closed-{user.pk}", False, False)
    assert not TokenFamily.objects.filter(user=user, revoked_at__isnull=True).exists()
    assert not ExternalIdentity.objects.filter(user=user).exists()
    assert api(client, "GET", "/me", token=second["access_token"]).status_code == 401
    assert api(client, "POST", "/auth/refresh",
               {"refresh_token": second["refresh_token"]}).status_code == 401
    assert api(client, "GET", "/products/kikoy/reviews").json()["items"][0]["reviewer"] == \
        "A customer"
    entry = AuditEntry.objects.get(action=AuditAction.CUSTOMER_ERASED)
    assert entry.data["by"] == "customer" and entry.object_repr == f"customer #{user.pk}"
    sign_up(Client())  # the address can make a new account


def test_closing_needs_the_current_password_when_the_account_has_one(client):
    token = sign_up(client)
    for body, code in [({}, "password_required"), ({"password": "wrong-one-1"},
                                                     "invalid_password")]:
        response = api(client, "DELETE", "/me", body, token)
        assert response.status_code == 400, response.content
        assert response.json()["code"] == code
        assert response.json()["errors"][0]["field"] == "password"
    assert api(client, "GET", "/me", token=token).status_code == 200


def test_an_account_without_a_password_closes_without_one(client):
    user = register_customer(email=EMAIL, password=PASSWORD)
    user.set_unusable_password()  # as an account made by signing in with a provider
    user.save()
    token = start_session(user).access_token
    response = api(client, "DELETE", "/me", token=token)  # no body at all
    assert response.status_code == 204, response.content
    assert not get_user_model().objects.get(pk=user.pk).is_active


def test_a_staff_account_is_not_closed_through_the_storefront(client):
    staff = register_customer(email="clerk@shop.example", password=PASSWORD)
    staff.is_staff = True
    staff.save()
    token = start_session(staff).access_token
    response = api(client, "DELETE", "/me", {"password": PASSWORD}, token)
    assert response.status_code == 403
    assert response.json()["code"] == "staff_account"
    assert get_user_model().objects.get(pk=staff.pk).is_active


def test_a_pending_message_to_a_closed_account_is_never_sent(client, staff_client):
    sign_up(client)  # its "confirm your email" waits in the outbox (no commit here)
    user = get_user_model().objects.get(username=EMAIL)
    waiting = Notification.objects.get(event="email_verification")
    privacy.close_account(user)
    waiting.refresh_from_db()
    assert (waiting.status, waiting.recipient, waiting.context) == (
        Status.FAILED, f"erased:{waiting.pk}", {})
    assert notifications.resend([waiting.pk]) == (0, 1)
    page = staff_client.get(f"/admin/notifications/notification/{waiting.pk}/change/")
    assert "Erased: the customer closed their account." in page.content.decode()


class ClosingWhileSending:
    """A mail channel during whose send the customer closes their account."""

    code, name, recipient_kind = "slow_mail", "Slow mail", "email"
    hookspec_version = ">=1.1,<2"

    def send(self, notification, config):
        notifications.erase([notification.notification_id])
        return DeliveryResult(status="sent", provider_message_id="slow-1")

    @hookimpl
    def register_notification_channels(self):
        return [self]


def test_a_message_erased_while_it_is_being_sent_records_its_outcome_not_its_text(
    register_plugin,
):
    register_plugin(ClosingWhileSending(), "slow_mail")
    row = Notification.objects.create(
        event="staff_low_stock", event_key="low:1", audience="customer", channel="slow_mail",
        recipient=EMAIL, context={"sku": "KIK", "product_name": FIRST, "warehouse": "NBO",
                                  "available": 1, "threshold": 2})
    assert notifications.send(row.pk) == Status.SENT
    row.refresh_from_db()
    assert (row.status, row.provider_message_id, row.recipient, row.body, row.context) == (
        Status.SENT, "slow-1", f"erased:{row.pk}", notifications.ERASED_TEXT, {})


# --- The admin, on the customer's request ------------------------------------------------------


def support_member(*, role=roles.CUSTOMER_SUPPORT, name="support"):
    user = get_user_model().objects.create_user(name, password="pw-123-long", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    return user


def bulk(client, action, *pks, **extra):
    return client.post("/admin/auth/user/", {"action": action, "index": 0,
                                             helpers.ACTION_CHECKBOX_NAME: list(pks), **extra})


def test_support_closes_an_account_after_confirming_and_finance_may_not(client):
    customer = register_customer(email=EMAIL, password=PASSWORD, first_name=FIRST)
    client.force_login(support_member(role=roles.FINANCE, name="finance"))
    assert bulk(client, "close_accounts", customer.pk).status_code == 403
    with pytest.raises(ActionNotPermitted):
        privacy.close_account(customer, actor=Actor(user=get_user_model().objects.get(
            username="finance")))

    support = support_member()
    client.force_login(support)
    assert 'value="close_accounts"' in client.get("/admin/auth/user/").content.decode()
    asked = bulk(client, "close_accounts", customer.pk)
    assert asked.status_code == 200 and "Close and erase" in asked.content.decode()
    assert get_user_model().objects.get(pk=customer.pk).is_active  # nothing yet
    unconfirmed = bulk(client, "close_accounts", customer.pk, apply="yes", reason="ticket 7")
    assert unconfirmed.status_code == 200
    assert get_user_model().objects.get(pk=customer.pk).is_active
    done = bulk(client, "close_accounts", customer.pk, apply="yes", confirm="on",
                reason=f"{FIRST}'s email of 3 May, ticket 7")
    assert done.status_code == 302
    customer.refresh_from_db()
    assert not customer.is_active and customer.username == f"closed-{customer.pk}"
    entry = AuditEntry.objects.get(action=AuditAction.CUSTOMER_ERASED)
    assert (entry.actor, entry.data["by"]) == (support, "staff")
    assert entry.data["reason"] == "[erased]'s email of 3 May, ticket 7"
    # Once is enough: a second close is refused, saying why.
    with pytest.raises(AccountError, match="closed already"):
        privacy.close_account(customer, actor=Actor(user=support))


# --- Exporting a customer's data ---------------------------------------------------------------


def test_the_export_holds_the_profile_consents_addresses_orders_reviews_and_sessions(
    client, django_assert_max_num_queries,
):
    token = sign_up(client, accepts_marketing=True)
    api(client, "PATCH", "/me", {"notification_channels": ["email"], "language": "en",
                                 "preferences": {"size": "M"}}, token)
    api(client, "POST", "/me/addresses", HOME, token)
    order = buy(client, token)
    api(client, "POST", "/products/kikoy/reviews", {"rating": 4, "comment": "Soft."}, token)
    log_in(client)
    link_sign_in(get_user_model().objects.get(username=EMAIL))
    with django_assert_max_num_queries(9):
        response = api(client, "GET", "/me/export", token=token)
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["format"] == privacy.EXPORT_FORMAT
    assert (data["profile"]["email"], data["profile"]["first_name"], data["profile"]["phone"]) \
        == (EMAIL, FIRST, "+254798765432")
    assert data["consents"] == {"accepts_marketing": True, "notification_channels": ["email"],
                                "notification_channels_chosen": True, "language": "en"}
    assert data["preferences"] == {"size": "M"}
    assert [a["line1"] for a in data["addresses"]] == [HOME["line1"]]
    [exported] = data["orders"]
    assert (exported["number"], exported["total"], exported["status"]) == (
        order.number, str(order.total), "open")
    assert exported["billing_address"]["line1"] == BILLING["line1"]
    assert [(ln["sku"], ln["quantity"], ln["unit_price"]) for ln in exported["lines"]] == [
        ("KIK", 2, "1200.00")]
    assert [(r["product_slug"], r["rating"]) for r in data["reviews"]] == [("kikoy", 4)]
    assert {s["user_agent"] for s in data["sessions"]} == {"", "QuillBrowser/7.3"}
    assert [(s["provider"], s["email"]) for s in data["sign_ins"]] == [("Google", EMAIL)]
    assert not AuditEntry.objects.exists()  # the customer's own copy is no staff action


def test_staff_download_one_customers_data_with_the_export_permission_audited(client):
    customer = register_customer(email=EMAIL, password=PASSWORD, first_name=FIRST)
    client.force_login(support_member())  # support: no export permission
    assert bulk(client, "export_personal_data", customer.pk).status_code == 403
    finance = support_member(role=roles.FINANCE, name="finance")
    client.force_login(finance)
    response = bulk(client, "export_personal_data", customer.pk)
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="customer-{customer.pk}.json"'
    assert json.loads(response.content)["profile"]["email"] == EMAIL
    entry = AuditEntry.objects.get(action=AuditAction.CUSTOMERS_EXPORTED)
    assert (entry.actor, entry.object_id, entry.object_repr) == (
        finance, str(customer.pk), f"customer #{customer.pk}")


# --- Sessions -----------------------------------------------------------------------------------


def test_sessions_are_listed_with_the_current_one_and_revoked_one_at_a_time(
    client, django_assert_num_queries,
):
    first = sign_up(client)
    other = log_in(client)
    with django_assert_num_queries(2):  # the token's, the list's
        listed = api(client, "GET", "/me/sessions", token=first)
    assert listed.status_code == 200
    sessions = listed.json()
    assert len(sessions) == 2
    current = next(s for s in sessions if s["current"])
    phone = next(s for s in sessions if not s["current"])
    assert phone["user_agent"] == "QuillBrowser/7.3" and current["user_agent"] == ""

    assert api(client, "DELETE", f"/me/sessions/{phone['id']}", token=first).status_code == 204
    # Its tokens stop working at once; the current session goes on.
    assert api(client, "GET", "/me", token=other["access_token"]).status_code == 401
    assert api(client, "POST", "/auth/refresh",
               {"refresh_token": other["refresh_token"]}).status_code == 401
    assert [s["id"] for s in api(client, "GET", "/me/sessions", token=first).json()] == [
        current["id"]]

    # Another customer's session, or no session at all: 404.
    stranger = sign_up(Client(), email="stranger@privacy-test.example")
    theirs = api(client, "GET", "/me/sessions", token=stranger).json()[0]["id"]
    for session_id in (theirs, str(uuid.uuid4()), "not-a-uuid"):
        response = api(client, "DELETE", f"/me/sessions/{session_id}", token=first)
        assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert api(client, "GET", "/me", token=stranger).status_code == 200


def test_the_account_pages_work_on_a_closed_account(staff_client):
    customer = register_customer(email=EMAIL, password=PASSWORD, first_name=FIRST)
    privacy.close_account(customer)
    page = staff_client.get(f"/admin/auth/user/{customer.pk}/change/")
    assert page.status_code == 200 and EMAIL not in page.content.decode()
