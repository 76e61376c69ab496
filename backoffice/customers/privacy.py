"""A customer's own data: closing the account (its personal data erased) and exporting it.

``close_account`` is the one way an account is closed: the storefront's ``DELETE /me`` (the
customer, with their current password when the account has one) and the admin's action on the
customers' list (staff with ``customers.erase_customers``, on the customer's request) both call
it. Everything happens in one transaction, with the rows locked in the order the other services
lock them: the user, their carts (checkout locks the cart first), their orders (by primary key,
each as the order services lock it), the orders' payments (by primary key).

**Erased** (deleted, blanked, or the customer's known values replaced by ``[erased]``):

- the user's name, email and username (a placeholder ``closed-<id>``), password (unusable);
  the profile's phone, marketing consent, channels, language, preferences; the addresses;
  the carts; every session (revoked, user agents blanked);
- on the orders (theirs, and guest orders placed with their email once it was verified, as
  those join the account): email, phone, customer note, and the shipping and billing
  addresses but their country;
- the payments' phone numbers, the providers' stored payloads (webhooks, callbacks and query
  answers: an M-Pesa callback holds the payer's number, a Stripe event the card holder's name
  and address), and their values in the payments' messages and next actions and in the
  events' claims;
- the notifications to them (recipient, rendered text, context; those still queued are not
  sent) and the rendered text of staff alerts about their orders;
- their values wherever free text or JSON may quote them: order timeline notes and actors,
  refund reasons, stock ledger actors (checkout records the customer's email), coupon
  redemptions' emails, review comments, plugin events' payloads (``customer`` and ``email``),
  the audit trail and the admin's change history (the user's, profile's and addresses' names).

**Kept**, because accounting and the law need them: the orders (numbers, lines, prices, taxes
and totals, statuses, shipments, refunds, the country) and the payments (provider, amounts,
references, statuses), with the user row they point at. The user row stays (inactive, no name,
no usable password, ``closed-<id>``) so the orders' and reviews' links hold and the reports
count one customer; nothing in it identifies the person, and their email is free to register
again. Reviews stay, their author shown as "A customer" (the name came from the user).

A confirmation ("your account is closed") is mailed to the old address through the
notifications outbox; once sent (or failed for good) its row keeps nothing of the recipient
(``MessageEvent.erase_after_send``). The audit trail records the closing without personal data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import phonenumbers
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from backoffice.audit.models import AuditAction, AuditEntry
from backoffice.audit.services import record
from backoffice.checkout.models import Cart
from backoffice.customers.models import Address, CustomerProfile, TokenFamily
from backoffice.customers.services import AccountError, _revoke_families, sessions_of
from backoffice.identity.models import ExternalIdentity
from backoffice.inventory.services import Actor
from backoffice.money import money_text
from backoffice.notifications import services as notifications
from backoffice.notifications.models import Audience, Notification
from backoffice.orders.models import Order, OrderEvent, Refund
from backoffice.payments.models import Payment, PaymentEvent
from backoffice.permissions import ERASE_CUSTOMERS, EXPORT_CUSTOMERS, require
from backoffice.plugin_host.models import PluginEvent, PluginEventDelivery
from backoffice.promotions.models import CouponRedemption
from backoffice.reviews.models import Review

ERASED = "[erased]"
CLOSED_EMAIL_DOMAIN = "closed.invalid"  # RFC 2606: never delivered anywhere
EXPORT_FORMAT = "backoffice.account-export/1"


def closed_username(user_id: int) -> str:
    return f"closed-{user_id}"


def _for_self(actor: Any, user: AbstractBaseUser) -> bool:
    """Whether ``actor`` is the customer acting on their own account (the storefront)."""
    acting = getattr(actor, "user", None)
    return acting is not None and getattr(acting, "pk", None) == user.pk


# --- What is known of a customer, and finding it in text ---------------------------------------


def _phone_pattern(raw: str) -> tuple[str, set[str]] | None:
    """A regex finding the number however it is written (``+254 712 345 678``, ``0712345678``,
    ``254712345678``), and its plain digit forms (for numbers stored as JSON numbers)."""
    digits = re.sub(r"\D", "", raw or "")
    try:
        number = phonenumbers.parse(raw, settings.STORE_COUNTRY or None)
        country, national = str(number.country_code), phonenumbers.national_significant_number(
            number)
    except phonenumbers.NumberParseException:
        country, national = "", digits
    if len(national) < 6:
        return None
    body = r"[\s.()-]*".join(national)
    prefix = rf"(?:(?:\+|00)?{country}[\s.()-]*|0)?" if country else ""
    forms = {national, f"0{national}"} | ({f"{country}{national}"} if country else set())
    return rf"(?<!\d){prefix}{body}(?!\d)", forms


class Redactor:
    """Replaces a customer's known values (emails, phone numbers in any usual form, names,
    address lines) with ``[erased]`` in text and in JSON (strings, keys' values, and numbers
    that are one of their phone numbers)."""

    def __init__(self, *, emails=(), phones=(), words=()) -> None:
        patterns: list[str] = []
        self._numbers: set[str] = set()
        for email in {e.strip().lower() for e in emails if e and e.strip()}:
            patterns.append(re.escape(email))
        for phone in {p for p in phones if p}:
            found = _phone_pattern(phone)
            if found:
                patterns.append(found[0])
                self._numbers |= found[1]
        for word in {w.strip() for w in words if w and len(w.strip()) >= 2}:
            patterns.append(rf"(?<!\w){re.escape(word)}(?!\w)")
        # Longest first: "Amina Otieno" before "Amina".
        patterns.sort(key=len, reverse=True)
        self._pattern = re.compile("|".join(patterns), re.IGNORECASE) if patterns else None

    def text(self, value: str) -> str:
        if not value or self._pattern is None:
            return value
        return self._pattern.sub(ERASED, value)

    def json(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {key: self.json(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.json(item) for item in value]
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, int) and not isinstance(value, bool) and str(value) in self._numbers:
            return ERASED
        return value


def _address_values(address: dict | None) -> list[str]:
    address = address or {}
    return [str(address.get(k) or "") for k in ("first_name", "last_name", "company", "line1",
                                                 "line2")]


def _redactor(user, profile, addresses, orders, payments) -> Redactor:
    words = [user.first_name, user.last_name, user.get_username()]
    phones = [profile.phone]
    for address in addresses:
        words += [address.first_name, address.last_name, address.company, address.line1,
                  address.line2]
        phones.append(address.phone)
    for order in orders:
        words += _address_values(order.shipping_address) + _address_values(order.billing_address)
        phones += [order.phone, str((order.shipping_address or {}).get("phone") or ""),
                   str((order.billing_address or {}).get("phone") or "")]
    phones += [payment.phone for payment in payments]
    emails = [user.email, *(order.email for order in orders)]
    # The username is the email for customers; a name-like one is a word.
    return Redactor(emails=emails, phones=phones,
                    words=[w for w in words if w and "@" not in w])


# --- Closing an account ------------------------------------------------------------------------


@dataclass(frozen=True)
class Closure:
    """What closing an account changed (counts, for the admin's message and the audit)."""

    user_id: int
    orders: int
    payments: int
    notifications: int
    confirmation_queued: bool


def _refuse_if_not_closable(user: AbstractBaseUser) -> None:
    if user.is_staff or user.is_superuser:
        raise AccountError("A staff account cannot be closed this way: take its staff access "
                           "away first (an owner does it in the admin).", code="staff_account")
    if CustomerProfile.objects.filter(user=user, closed_at__isnull=False).exists():
        raise AccountError("This account is closed already.", code="already_closed")


def _check_password(user: AbstractBaseUser, password: str | None) -> None:
    """The customer proves it is them, when the account has a password (an account made by
    signing in with a provider has none)."""
    if not user.has_usable_password():
        return
    if not password:
        raise AccountError("Give your current password to close the account.",
                           field="password", code="password_required")
    if not user.check_password(password):
        raise AccountError("The password is wrong.", field="password",
                           code="invalid_password")


def close_account(user: AbstractBaseUser, *, actor: Any = None, reason: str = "",
                  password: str | None = None) -> Closure:
    """Close ``user``'s account and erase their personal data (see the module's docstring for
    what is erased and what is kept).

    ``actor``: the customer themselves (``Actor(user=user)``, the storefront), who must give
    their ``password`` when the account has one; staff, who need ``customers.erase_customers``;
    None, the system. ``reason`` (why, e.g. the customer's request) goes to the audit trail with
    the customer's known values taken out. ``AccountError`` (nothing changed) for a staff
    account (``staff_account``), one closed already (``already_closed``), a missing or wrong
    password (``password_required``, ``invalid_password``)."""
    for_self = _for_self(actor, user)
    if not for_self:
        require(actor, ERASE_CUSTOMERS)
    _refuse_if_not_closable(user)
    if for_self:
        _check_password(user, password)
    with transaction.atomic():
        user = get_user_model().objects.select_for_update().get(pk=user.pk)
        # Decided again under the lock: a second close waits for the first, then is refused.
        _refuse_if_not_closable(user)
        profile, _created = CustomerProfile.objects.select_for_update().get_or_create(user=user)
        carts = list(Cart.objects.select_for_update().filter(user=user).order_by("pk")
                     .values_list("pk", flat=True))
        orders = _locked_orders(user, profile)
        order_ids = [order.pk for order in orders]
        payments = list(Payment.objects.select_for_update().filter(order_id__in=order_ids)
                        .order_by("pk"))
        addresses = list(Address.objects.filter(user=user))
        redact = _redactor(user, profile, addresses, orders, payments)
        label = "customer" if for_self else (getattr(actor, "label", "") or "system")

        erased = _erase_notifications(user, order_ids)
        queued = _queue_confirmation(user)  # before the profile's language is erased
        _anonymise_orders(orders, actor, label)
        _erase_order_history(user, order_ids, redact)
        _erase_payments(payments, redact)
        _erase_plugin_events(user, order_ids, redact)
        _erase_stock_ledger(user, orders, carts, redact)
        CouponRedemption.objects.filter(Q(user=user) | Q(order_id__in=order_ids)) \
            .update(email="")
        _redact_rows(Review.objects.filter(user=user).exclude(comment=""), redact,
                     text=["comment"])
        _erase_trails(user, profile, addresses, order_ids, [p.pk for p in payments], redact)
        Cart.objects.filter(pk__in=carts).delete()
        Address.objects.filter(user=user).delete()
        _revoke_families(TokenFamily.objects.filter(user=user), "account closed")
        TokenFamily.objects.filter(user=user).exclude(user_agent="").update(user_agent="")
        ExternalIdentity.objects.filter(user=user).delete()  # linked sign-in providers
        _erase_profile(profile)
        _erase_user(user)
        closure = Closure(user_id=user.pk, orders=len(orders), payments=len(payments),
                          notifications=erased, confirmation_queued=queued)
        if for_self:  # named by the user as it is now (``closed-<id>``), not by the email
            actor = Actor(user=user, label="customer")
        record(actor, AuditAction.CUSTOMER_ERASED, None,
               "Account closed by the customer; personal data erased." if for_self else
               "Account closed on the customer's request; personal data erased.",
               object_type=user._meta.label_lower, object_id=user.pk,
               object_repr=f"customer #{user.pk}",
               data={"by": "customer" if for_self else "staff",
                     "reason": redact.text(reason or "")[:200], "orders": closure.orders,
                     "payments": closure.payments, "notifications": closure.notifications})
    return closure


def _locked_orders(user: AbstractBaseUser, profile: CustomerProfile) -> list[Order]:
    """The customer's orders, and the guest orders placed with their email once they proved
    it theirs (those join the account), locked by primary key."""
    mine = Q(user=user)
    if profile.email_verified_at is not None and user.email:
        mine |= Q(user__isnull=True, email__iexact=user.email)
    ids = list(Order.objects.filter(mine).values_list("pk", flat=True))
    return list(Order.objects.select_for_update(of=("self",)).filter(pk__in=ids).order_by("pk"))


def _redact_rows(queryset, redact: Redactor, *, text=(), json=(), values=None) -> int:
    """Redact the ``text`` and ``json`` fields of the rows (``values``: fields set outright);
    saved with one ``bulk_update`` of those that changed."""
    names = [*text, *json, *(values or {})]
    changed = []
    for row in queryset.only("pk", *names):
        before = [getattr(row, name) for name in names]
        for name in text:
            setattr(row, name, redact.text(getattr(row, name)))
        for name in json:
            setattr(row, name, redact.json(getattr(row, name)))
        for name, value in (values or {}).items():
            setattr(row, name, value)
        if [getattr(row, name) for name in names] != before:
            changed.append(row)
    if changed:
        queryset.model.objects.bulk_update(changed, names, batch_size=500)
    return len(changed)


def _erase_notifications(user, order_ids: list[int]) -> int:
    """The customer's messages (every one names its user or its order) lose their recipient,
    text and context (those queued are not sent); staff alerts about their orders lose their
    text (rendered with the customer's details). Returns how many of the customer's."""
    rows = Notification.objects.filter(Q(user_id=user.pk) | Q(order_id__in=order_ids))
    found = list(rows.values_list("pk", "audience"))
    erased = notifications.erase([pk for pk, audience in found if audience != Audience.STAFF])
    notifications.erase([pk for pk, audience in found if audience == Audience.STAFF],
                        keep_recipient=True)
    return erased


def _queue_confirmation(user: AbstractBaseUser) -> bool:
    if not user.email:
        return False
    return bool(notifications.queue_customer(
        "account_closed", f"user:{user.pk}:closed", email=user.email, user_id=user.pk,
        context={"customer_name": user.first_name}))


def _anonymise_orders(orders: list[Order], actor: Any, label: str) -> None:
    now = timezone.now()
    for order in orders:
        order.email = order.phone = order.customer_note = ""
        order.shipping_address = _country_only(order.shipping_address)
        order.billing_address = _country_only(order.billing_address)
        order.updated_at = now
    Order.objects.bulk_update(orders, ["email", "phone", "customer_note", "shipping_address",
                                       "billing_address", "updated_at"], batch_size=500)
    user = getattr(actor, "user", None)
    OrderEvent.objects.bulk_create([
        OrderEvent(order=order, kind=OrderEvent.Kind.NOTE, note="Contact details erased: the "
                   "customer's account was closed.", actor_label=label[:120],
                   actor_id=user.pk if getattr(user, "is_authenticated", False) else None)
        for order in orders
    ])


def _country_only(address: dict | None) -> dict:
    address = dict(address or {})
    return {**{key: "" for key in address}, "country": address.get("country", "")}


def _erase_order_history(user, order_ids: list[int], redact: Redactor) -> None:
    _redact_rows(OrderEvent.objects.filter(Q(order_id__in=order_ids) | Q(actor_id=user.pk)),
                 redact, text=["note", "actor_label"])
    _redact_rows(Refund.objects.filter(order_id__in=order_ids), redact, text=["reason"])


def _erase_payments(payments: list[Payment], redact: Redactor) -> None:
    changed = []
    for payment in payments:
        payment.phone = ""
        payment.message = redact.text(payment.message)
        payment.next_action = redact.json(payment.next_action)
        changed.append(payment)
    Payment.objects.bulk_update(changed, ["phone", "message", "next_action"], batch_size=500)
    # What providers sent is kept as our claims (status, amounts, references); their payloads
    # hold whatever they know of the payer (a number, a card holder's name and address).
    _redact_rows(PaymentEvent.objects.filter(payment__in=payments), redact,
                 text=["outcome", "error"], json=["claims"], values={"payload": {}})


def _erase_plugin_events(user, order_ids: list[int], redact: Redactor) -> None:
    events = PluginEvent.objects.filter(
        Q(payload__order_id__in=order_ids)
        | Q(hook="customer_registered", payload__customer_id=user.pk))
    changed = []
    for event in events.only("pk", "payload"):
        payload = redact.json(dict(event.payload or {}))
        if isinstance(payload.get("customer"), dict):
            payload["customer"] = {key: "" for key in payload["customer"]}
        if "email" in payload:
            payload["email"] = ""
        if payload != event.payload:
            event.payload = payload
            changed.append(event)
    PluginEvent.objects.bulk_update(changed, ["payload"], batch_size=500)
    _redact_rows(PluginEventDelivery.objects.filter(event__in=events).exclude(last_error=""),
                 redact, text=["last_error"])


def _erase_stock_ledger(user, orders: list[Order], carts: list[int], redact: Redactor) -> None:
    """Checkout writes the customer (their email) as who allocated the stock, with the cart as
    the reference."""
    references = {f"cart {pk}" for pk in carts} | {f"cart {o.cart_id}" for o in orders
                                                    if o.cart_id}
    from backoffice.inventory.models import StockMovement

    _redact_rows(StockMovement.objects.filter(Q(actor_id=user.pk)
                                              | Q(reference__in=sorted(references))),
                 redact, text=["actor_label", "note"])


def _erase_trails(user, profile, addresses, order_ids, payment_ids, redact: Redactor) -> None:
    """The audit trail and the admin's change history name the customer (the user's name is
    their email; an address's, their name and street)."""
    user_type = user._meta.label_lower
    about = Q(object_type=user_type, object_id=str(user.pk))
    about |= Q(object_type=Order._meta.label_lower, object_id__in=[str(i) for i in order_ids])
    about |= Q(object_type=Payment._meta.label_lower,
               object_id__in=[str(i) for i in payment_ids])
    placeholder = f"customer #{user.pk}"
    for entry in AuditEntry.objects.filter(about):
        entry.object_repr = (placeholder if entry.object_type == user_type
                             else redact.text(entry.object_repr))
        entry.summary = redact.text(entry.summary)
        entry.data = redact.json(entry.data)
        entry.save(update_fields=["object_repr", "summary", "data"])
    if not apps.is_installed("django.contrib.admin"):
        return
    from django.contrib.admin.models import LogEntry
    from django.contrib.contenttypes.models import ContentType

    types = ContentType.objects.get_for_models(type(user), CustomerProfile, Address, Order)
    logged = (Q(content_type=types[type(user)], object_id=str(user.pk))
              | Q(content_type=types[CustomerProfile], object_id=str(profile.pk))
              | Q(content_type=types[Address], object_id__in=[str(a.pk) for a in addresses])
              | Q(content_type=types[Order], object_id__in=[str(i) for i in order_ids]))
    personal = {types[type(user)].pk, types[CustomerProfile].pk, types[Address].pk}
    for entry in LogEntry.objects.filter(logged):
        entry.object_repr = (placeholder if entry.content_type_id in personal
                             else redact.text(entry.object_repr))
        entry.change_message = redact.text(entry.change_message)
        entry.save(update_fields=["object_repr", "change_message"])


def _erase_profile(profile: CustomerProfile) -> None:
    profile.phone = profile.language = ""
    profile.accepts_marketing = False
    profile.preferences = {}
    profile.notification_channels = None
    profile.email_verified_at = None
    profile.closed_at = timezone.now()
    profile.save()


def _erase_user(user: AbstractBaseUser) -> None:
    user.username = closed_username(user.pk)
    user.email = f"{closed_username(user.pk)}@{CLOSED_EMAIL_DOMAIN}"
    user.first_name = user.last_name = ""
    user.is_active = False
    user.last_login = None
    user.set_unusable_password()
    user.save(update_fields=["username", "email", "first_name", "last_name", "is_active",
                             "last_login", "password"])


# --- Exporting a customer's data ----------------------------------------------------------------


def export_account(user: AbstractBaseUser, *, actor: Any = None) -> dict[str, Any]:
    """Everything the store holds about ``user`` as one JSON-ready document: profile, consents
    (marketing, notification channels, language), preferences, addresses, orders (lines,
    totals, statuses, addresses), reviews and sessions. Seven queries, whatever the numbers.

    ``actor``: the customer (or None) for their own; staff need ``customers.export_customers``,
    and their export is written to the audit trail (the document is personal data)."""
    staff = not _for_self(actor, user) and actor is not None
    if staff:
        require(actor, EXPORT_CUSTOMERS)
    profile = CustomerProfile.objects.filter(user=user).first() or CustomerProfile(user=user)
    chosen = profile.notification_channels
    document = {
        "format": EXPORT_FORMAT,
        "exported_at": timezone.now(),
        "profile": {
            "email": user.email, "first_name": user.first_name, "last_name": user.last_name,
            "phone": profile.phone, "joined_at": user.date_joined, "last_login": user.last_login,
            "email_verified_at": profile.email_verified_at, "closed_at": profile.closed_at,
        },
        "consents": {
            "accepts_marketing": profile.accepts_marketing,
            "notification_channels": list(settings.NOTIFICATION_DEFAULT_CHANNELS
                                          if chosen is None else chosen),
            "notification_channels_chosen": chosen is not None,
            "language": profile.language,
        },
        "preferences": profile.preferences or {},
        "addresses": [_address_out(address) for address in Address.objects.filter(user=user)],
        "orders": [_order_out(order) for order in Order.objects.filter(user=user)
                   .prefetch_related("lines").order_by("-created_at", "-id")],
        "reviews": [_review_out(review) for review in Review.objects.filter(user=user)
                    .select_related("product").order_by("-created_at", "-id")],
        "sessions": [_session_out(family)
                     for family in sessions_of(user).order_by("-created_at")],
        "sign_ins": [
            {"provider": identity.provider.name, "email": identity.email,
             "linked_at": identity.created_at, "last_used_at": identity.last_used_at}
            for identity in ExternalIdentity.objects.filter(user=user)
            .select_related("provider").order_by("created_at", "pk")],
    }
    if staff:
        record(actor, AuditAction.CUSTOMERS_EXPORTED, None,
               "One customer's personal data exported (JSON).",
               object_type=user._meta.label_lower, object_id=user.pk,
               object_repr=f"customer #{user.pk}", data={"count": 1, "format": "json"})
    return document


_ADDRESS_FIELDS = ("first_name", "last_name", "company", "line1", "line2", "city", "region",
                   "postal_code", "country", "phone")


def _address_out(address: Address) -> dict[str, Any]:
    return {"id": address.pk, **{name: getattr(address, name) for name in _ADDRESS_FIELDS},
            "is_default_shipping": address.is_default_shipping,
            "is_default_billing": address.is_default_billing,
            "created_at": address.created_at}


def _snapshot(address: dict | None) -> dict[str, str]:
    return {name: str((address or {}).get(name) or "") for name in _ADDRESS_FIELDS}


def _order_out(order: Order) -> dict[str, Any]:
    cur = order.currency

    def money(amount) -> str:
        return money_text(amount, cur)

    return {
        "number": order.number or "", "placed_at": order.created_at, "status": order.status,
        "payment_status": order.payment_status, "fulfilment_status": order.fulfilment_status,
        "email": order.email, "phone": order.phone, "currency": cur,
        "subtotal": money(order.subtotal), "discount_total": money(order.discount_total),
        "shipping_total": money(order.shipping_total), "total": money(order.total),
        "refunded_total": money(order.refunded_total), "coupon_code": order.coupon_code,
        "shipping_method": order.shipping_method_name, "payment_method": order.payment_method,
        "paid_at": order.paid_at, "cancelled_at": order.cancelled_at,
        "customer_note": order.customer_note,
        "shipping_address": _snapshot(order.shipping_address),
        "billing_address": _snapshot(order.billing_address),
        "lines": [
            {"sku": line.sku, "product_name": line.product_name,
             "variant_name": line.variant_name, "quantity": line.quantity,
             "unit_price": money(line.unit_price), "discount": money(line.discount_amount),
             "total": money(line.total), "quantity_shipped": line.quantity_shipped,
             "quantity_refunded": line.quantity_refunded}
            for line in order.lines.all()
        ],
    }


def _review_out(review: Review) -> dict[str, Any]:
    return {"id": review.pk, "product_slug": review.product.slug,
            "product_name": review.product.name, "rating": review.rating,
            "comment": review.comment, "published": review.is_published,
            "verified_purchase": review.verified_purchase, "created_at": review.created_at,
            "updated_at": review.updated_at}


def _session_out(family: TokenFamily) -> dict[str, Any]:
    return {"id": str(family.pk), "created_at": family.created_at,
            "last_used_at": family.last_used_at or family.created_at,
            "user_agent": family.user_agent, "revoked_at": family.revoked_at,
            "live": family.revoked_at is None and family.has_token}
