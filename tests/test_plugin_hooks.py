"""Every hook, exercised through the platform the way the back office calls it.

A test here is named after each hook (``test_docs_and_tests_cover_every_hook`` checks).
"""

import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.test import Client
from django.urls import clear_url_caches, path
from django.utils import timezone
from ninja import NinjaAPI, Router

from backoffice import hookspecs
from backoffice.hookspecs import hookimpl
from backoffice.plugin_host.api_routers import mount_plugin_routers
from backoffice.plugin_host.errors import (
    NoShippingRate,
    PluginConfigError,
    ShippingRateError,
    ShippingUnavailable,
    UnknownProvider,
)
from backoffice.plugin_host.events import emit_event
from backoffice.plugin_host.protocols import (
    DashboardWidget,
    DeliveryResult,
    Notification,
    PaymentRequest,
    ScheduledJob,
    ShippingMethod,
    ShippingRequest,
)
from backoffice.plugin_host.services import (
    notification_channel,
    notification_channels,
    payment_provider,
    payment_providers,
    quote_shipping,
    scheduled_jobs,
    shipping_methods,
)
from plugins import flat_rate_shipping, manual_payment

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent

KENYA = ShippingRequest(subtotal=Decimal("1200.00"), currency="KES", item_count=2, country="KE")


def plugin(**hooks):
    """A plugin object with the given hook implementations."""
    attrs = {"hookspec_version": ">=1.0,<2"}
    for name, func in hooks.items():
        attrs[name] = staticmethod(hookimpl(func))
    return type("TestPlugin", (), attrs)()


# --- Registries -----------------------------------------------------------------------------


def test_register_payment_providers_routes_a_payment_by_code(register_plugin):
    register_plugin(manual_payment, "manual_payment",
                    config={"instructions": "Pay {amount} to paybill 123, account {order_number}"})
    assert [p.code for p in payment_providers()] == ["manual"]
    bound = payment_provider("manual")
    start = bound.provider.initiate(
        PaymentRequest(payment_id=1, order_number="1001", amount=Decimal("10.00"),
                       currency="KES", idempotency_key="k1"),
        bound.config,
    )
    assert start.next_action.kind == "instructions"
    assert start.next_action.message == "Pay 10.00 KES to paybill 123, account 1001"
    assert start.status == "pending"


def test_a_registry_that_raises_is_skipped_and_the_others_still_count(register_plugin):
    def broken():
        raise RuntimeError("misconfigured")

    register_plugin(plugin(register_payment_providers=broken), "broken_payments")
    register_plugin(manual_payment, "manual_payment")
    assert [p.code for p in payment_providers()] == ["manual"]


def test_register_payment_providers_of_inactive_plugins_are_not_offered(register_plugin):
    register_plugin(manual_payment, "manual_payment", active=False)
    assert payment_providers() == []
    with pytest.raises(UnknownProvider):
        payment_provider("manual")


def test_register_notification_channels_finds_a_channel_and_refuses_missing_settings(
    register_plugin,
):
    sent = []

    class Sms:
        code, name = "sms", "SMS"

        def send(self, notification, config):
            sent.append((notification.recipient, config["sender_id"]))
            return DeliveryResult(status="sent", provider_message_id="m1")

    from backoffice.plugin_host.config import ConfigField

    sms_plugin = plugin(register_notification_channels=lambda: [Sms()])
    sms_plugin.config_fields = [ConfigField("sender_id", "Sender id", required=True)]
    register_plugin(sms_plugin, "sms_plugin", config={})
    # The bundled email channel is on from the first migrate.
    assert [c.code for c in notification_channels()] == ["sms", "email"]
    with pytest.raises(PluginConfigError, match="sender_id"):
        notification_channel("sms")

    register_plugin(plugin(), "other")  # unrelated plugins change nothing
    from backoffice.plugin_host.models import PluginConfig

    PluginConfig.objects.filter(identifier="sms_plugin").update(settings={"sender_id": "SHOP"})
    bound = notification_channel("sms")
    result = bound.provider.send(Notification("+254700000001", "Hi", "Your order"), bound.config)
    assert result.status == "sent"
    assert sent == [("+254700000001", "SHOP")]


def test_register_shipping_methods_lists_the_active_methods(register_plugin):
    register_plugin(flat_rate_shipping, "flat_rate_shipping", config={"label": "Boda delivery"})
    assert shipping_methods() == [ShippingMethod(code="flat_rate", name="Boda delivery")]


def test_register_api_routers_mounts_routes_that_follow_the_active_flag(register_plugin, settings):
    router = Router()

    @router.get("/balance")
    def balance(request):
        return {"points": 12}

    register_plugin(plugin(register_api_routers=lambda: [("loyalty", router)]), "loyalty")
    api = NinjaAPI(urls_namespace="plugin-routes-test")
    assert mount_plugin_routers(api) == ["/plugins/loyalty/"]
    _test_urlconf.urlpatterns = [path("api/v1/", api.urls)]
    settings.ROOT_URLCONF = _test_urlconf
    clear_url_caches()
    client = Client()
    assert client.get("/api/v1/plugins/loyalty/loyalty/balance").json() == {"points": 12}

    from backoffice.plugin_host.models import PluginConfig

    PluginConfig.objects.filter(identifier="loyalty").update(active=False)
    response = client.get("/api/v1/plugins/loyalty/loyalty/balance")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


class _test_urlconf:  # noqa: N801 - a module stand-in for ROOT_URLCONF
    urlpatterns: list = []


def test_register_schedules_collects_jobs_with_their_plugin(register_plugin):
    job = ScheduledJob(name="sync points", func="math.floor", minutes=60)
    register_plugin(plugin(register_schedules=lambda: [job]), "loyalty")
    assert ("loyalty", job) in scheduled_jobs()


def test_register_dashboard_widgets_appear_on_the_dashboard(register_plugin, staff_client):
    def broken(request):
        raise RuntimeError("widget bug")

    register_plugin(plugin(register_dashboard_widgets=lambda: [
        DashboardWidget(title="Points issued today", value=lambda request: 4217, link="/admin/"),
        DashboardWidget(title="Broken widget", value=broken),
    ]), "loyalty")
    html = staff_client.get("/admin/").content.decode()
    assert "Points issued today" in html and "4217" in html
    assert "Broken widget" in html, "a broken widget shows a dash; the page still renders"


# --- Events ---------------------------------------------------------------------------------

EVENT_ARGUMENTS = {
    "customer_registered": {"customer_id": 1, "email": "a@example.com"},
    "order_placed": {"order_id": 1, "order_number": "1001", "total": "9.50", "currency": "KES"},
    "order_status_changed": {"order_id": 1, "order_number": "1001",
                             "old_status": "partially_shipped", "new_status": "shipped",
                             "state": "fulfilment", "status": "open", "payment_status": "paid",
                             "fulfilment_status": "shipped"},
    "payment_status_changed": {"payment_id": 3, "order_id": 1, "provider": "manual",
                               "old_status": "pending", "new_status": "succeeded"},
    "shipment_created": {"shipment_id": 4, "order_id": 1, "carrier": "G4S",
                         "tracking_number": "T-1"},
    "stock_low": {"variant_id": 5, "sku": "TEE-M", "warehouse_id": 1, "available": 2,
                  "threshold": 5},
    "import_finished": {"job_id": 6, "kind": "products", "summary": {"created": 3}},
    "order_refunded": {"refund_id": 7, "order_id": 1, "order_number": "1001", "amount": "4.00",
                       "currency": "KES", "reason": "torn", "customer": {"email": "a@b.co"}},
}


def _delivers(hook_name, register_plugin, django_capture_on_commit_callbacks):
    received = []
    arguments = EVENT_ARGUMENTS[hook_name]
    first_argument = next(iter(arguments))

    def listener(**kwargs):
        received.append(kwargs)

    # Takes only its first argument: a subset of the spec is allowed.
    impl = eval(f"lambda {first_argument}: listener(**{{{first_argument!r}: {first_argument}}})",  # noqa: S307
                {"listener": listener})
    register_plugin(plugin(**{hook_name: impl}), "listener")
    with django_capture_on_commit_callbacks(execute=True):
        emit_event(hook_name, **arguments)
    assert received == [{first_argument: arguments[first_argument]}]


def test_customer_registered_is_delivered(register_plugin, django_capture_on_commit_callbacks):
    _delivers("customer_registered", register_plugin, django_capture_on_commit_callbacks)


def test_order_placed_is_delivered(register_plugin, django_capture_on_commit_callbacks):
    _delivers("order_placed", register_plugin, django_capture_on_commit_callbacks)


def test_order_status_changed_is_delivered(register_plugin, django_capture_on_commit_callbacks):
    _delivers("order_status_changed", register_plugin, django_capture_on_commit_callbacks)


def test_order_status_changed_reaches_plugins_of_both_spec_versions_once_per_move(
    register_plugin, django_capture_on_commit_callbacks
):
    """A plugin written for hook specs 1.0 (four arguments) and one for 1.1 (which state moved,
    and all three after the move) both hear a real order's moves, one event per move."""
    from backoffice.catalog.models import Product, Variant
    from backoffice.inventory.services import adjust_stock
    from backoffice.orders import services as orders
    from backoffice.orders.models import Order, OrderLine

    old, new = [], []
    register_plugin(plugin(order_status_changed=lambda order_number, old_status, new_status:
                           old.append((old_status, new_status))), "spec_1_0")
    register_plugin(plugin(order_status_changed=lambda state, old_status, new_status, status,
                           payment_status, fulfilment_status: new.append(
                               (state, old_status, new_status, status, payment_status,
                                fulfilment_status))), "spec_1_1")
    variant = Variant.objects.create(product=Product.objects.create(name="Mug", slug="mug"),
                                     sku="MUG", price="300.00")
    adjust_stock(variant_id=variant.pk, quantity_change=5)
    order = Order.objects.create(
        email="a@example.com", currency="USD", subtotal="300.00", total="300.00",
        shipping_method_code="x", shipping_method_name="x", shipping_address={},
        billing_address={}, number="1001")
    OrderLine.objects.create(order=order, variant=variant, product_name="Mug", sku="MUG",
                             unit_price="300.00", quantity=1, total="300.00")
    with django_capture_on_commit_callbacks(execute=True):
        orders.mark_paid(order)
        orders.create_shipment(order, orders.ShipmentRequest())
    assert old == [("unpaid", "paid"), ("unfulfilled", "shipped")]
    assert new == [("payment", "unpaid", "paid", "open", "paid", "unfulfilled"),
                   ("fulfilment", "unfulfilled", "shipped", "open", "paid", "shipped")]


def test_payment_status_changed_is_delivered(register_plugin, django_capture_on_commit_callbacks):
    _delivers("payment_status_changed", register_plugin, django_capture_on_commit_callbacks)


def test_shipment_created_is_delivered(register_plugin, django_capture_on_commit_callbacks):
    _delivers("shipment_created", register_plugin, django_capture_on_commit_callbacks)


def test_stock_low_is_delivered(register_plugin, django_capture_on_commit_callbacks):
    _delivers("stock_low", register_plugin, django_capture_on_commit_callbacks)


def test_import_finished_is_delivered(register_plugin, django_capture_on_commit_callbacks):
    _delivers("import_finished", register_plugin, django_capture_on_commit_callbacks)


def test_order_refunded_is_delivered(register_plugin, django_capture_on_commit_callbacks):
    _delivers("order_refunded", register_plugin, django_capture_on_commit_callbacks)


def test_a_notifier_gets_the_customer_and_an_event_id_without_our_models(
    register_plugin, django_capture_on_commit_callbacks
):
    """Hook specs 1.2: what a third-party notifier needs is in the arguments: who to tell and
    how, why an order was cancelled, how much was refunded, where the parcel can be tracked,
    and an id that is the same on every retry (to send once)."""
    from backoffice.catalog.models import Product, Variant
    from backoffice.inventory.services import adjust_stock
    from backoffice.orders import services as orders
    from backoffice.orders.models import Order, OrderLine

    heard = []
    attempts = {"n": 0}

    def flaky_refund(event_id, amount, reason, customer):
        attempts["n"] += 1
        if attempts["n"] == 1:
            raise ConnectionError("first try fails")
        heard.append(("refunded", event_id, amount, reason, customer["phone"]))

    register_plugin(plugin(
        order_placed=lambda event_id, customer: heard.append(("placed", event_id, customer)),
        shipment_created=lambda tracking_url, customer: heard.append(
            ("shipped", tracking_url, customer["email"])),
        order_refunded=flaky_refund,
    ), "whatsapp_notifier")
    variant = Variant.objects.create(product=Product.objects.create(name="Mug", slug="mug"),
                                     sku="MUG", price="300.00")
    adjust_stock(variant_id=variant.pk, quantity_change=5)
    with django_capture_on_commit_callbacks(execute=True):
        from backoffice.notifications.services import customer_of

        order = Order.objects.create(
            email="a@example.com", phone="0712 345 678", currency="KES", subtotal="300.00",
            total="300.00", shipping_method_code="x", shipping_method_name="x",
            shipping_address={}, billing_address={"first_name": "Amina"}, number="1001")
        line = OrderLine.objects.create(order=order, variant=variant, product_name="Mug",
                                        sku="MUG", unit_price="300.00", quantity=1,
                                        total="300.00")
        emit_event("order_placed", order_id=order.pk, order_number="1001", total="300.00",
                   currency="KES", customer=lambda: customer_of(order))
        orders.mark_paid(order)
        orders.create_shipment(order, orders.ShipmentRequest(
            tracking_url="https://track.example.com/1"))
        orders.record_refund(order, orders.RefundRequest(lines={line.pk: 1}, reason="torn"))
    placed = next(h for h in heard if h[0] == "placed")
    assert placed[2] == {"email": "a@example.com", "phone": "+254712345678", "name": "Amina",
                         "language": ""}
    assert ("shipped", "https://track.example.com/1", "a@example.com") in heard
    from backoffice.plugin_host import events
    from backoffice.plugin_host.models import PluginEventDelivery

    delivery = PluginEventDelivery.objects.get(event__hook="order_refunded")
    PluginEventDelivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    events.deliver(delivery.pk)
    assert heard[-1] == ("refunded", delivery.event_id, "300.00", "torn", "+254712345678")


# --- Decisions ------------------------------------------------------------------------------


def test_shipping_rate_flat_and_free_over_a_threshold(register_plugin):
    register_plugin(flat_rate_shipping, "flat_rate_shipping",
                    config={"rate": "250", "free_over": "5000"})
    quote = quote_shipping(method_code="flat_rate", request=KENYA)
    assert (quote.amount, quote.currency, quote.label) == (Decimal("250.00"), "KES",
                                                           "Standard delivery")
    big = ShippingRequest(subtotal=Decimal("5000.00"), currency="KES", item_count=9)
    assert quote_shipping(method_code="flat_rate", request=big).amount == Decimal("0.00")


def test_shipping_rate_refusal_is_a_typed_error(register_plugin):
    register_plugin(flat_rate_shipping, "flat_rate_shipping", config={"countries": "UG, TZ"})
    with pytest.raises(ShippingUnavailable, match="KE"):
        quote_shipping(method_code="flat_rate", request=KENYA)


def test_shipping_rate_with_no_answer_has_no_silent_default(register_plugin):
    courier = ShippingMethod(code="courier", name="Courier")
    register_plugin(plugin(register_shipping_methods=lambda: [courier]), "courier_listing")
    with pytest.raises(NoShippingRate):
        quote_shipping(method_code="courier", request=KENYA)
    with pytest.raises(UnknownProvider):
        quote_shipping(method_code="drone", request=KENYA)


def test_shipping_rate_plugin_crash_becomes_a_typed_error(register_plugin):
    def crash(method_code, request):
        raise KeyError("zone table")

    courier = ShippingMethod(code="courier", name="Courier")
    register_plugin(plugin(register_shipping_methods=lambda: [courier], shipping_rate=crash),
                    "courier")
    with pytest.raises(ShippingRateError) as error:
        quote_shipping(method_code="courier", request=KENYA)
    assert isinstance(error.value.__cause__, KeyError)


def test_shipping_rate_of_an_inactive_plugin_is_not_asked(register_plugin):
    courier = ShippingMethod(code="courier", name="Courier")
    register_plugin(plugin(register_shipping_methods=lambda: [courier]), "courier_listing")
    register_plugin(plugin(shipping_rate=lambda method_code: Decimal("1")), "off", active=False)
    with pytest.raises(NoShippingRate):
        quote_shipping(method_code="courier", request=KENYA)


# --- The contract's own documentation --------------------------------------------------------


def test_docs_and_tests_cover_every_hook():
    docs = (ROOT / "docs" / "plugins.md").read_text()
    tests = "\n".join(p.read_text() for p in (ROOT / "tests").glob("test_plugin*.py"))
    test_names = re.findall(r"^def (test_\w+)", tests, flags=re.MULTILINE)
    for name in sorted(hookspecs.HOOK_NAMES):
        spec = getattr(hookspecs, name)
        assert (spec.__doc__ or "").strip(), f"{name} has no docstring"
        assert f"#### `{name}`" in docs, f"{name} is not documented in docs/plugins.md"
        assert any(name in test for test in test_names), f"{name} has no test"
        section = docs.split(f"#### `{name}`", 1)[1].split("\n#### ", 1)[0]
        assert f"`{name}(" in section, f"docs/plugins.md gives no signature for {name}"
        assert "```python" in section and f"def {name}(" in section, (
            f"docs/plugins.md has no example for {name}")
    assert len(hookspecs.HOOK_NAMES) == 15


def test_every_event_hook_is_fired_by_the_code():
    source = "\n".join(
        p.read_text() for p in (ROOT / "backoffice").rglob("*.py") if p.name != "hookspecs.py"
    )
    events = set(re.findall(r"^def (\w+)\(", (ROOT / "backoffice" / "hookspecs.py").read_text()
                            .split("# --- Events", 1)[1].split("# --- Decisions", 1)[0],
                            flags=re.MULTILINE))
    assert len(events) == 8
    for name in sorted(events):
        assert re.search(rf"emit_event\(\s*\"{name}\"", source), f"nothing fires {name}"


def test_register_schedules_become_django_q_schedules_while_the_plugin_is_on(
    register_plugin, django_capture_on_commit_callbacks
):
    from django_q.models import Schedule

    from backoffice.plugin_host.services import update_plugin_config
    from backoffice.schedules import sync_schedules

    job = ScheduledJob(name="sync points", func="math.floor", cron="0 3 * * *")
    register_plugin(plugin(register_schedules=lambda: [job]), "loyalty")
    sync_schedules()
    schedule = Schedule.objects.get(name="plugin loyalty: sync points")
    assert (schedule.func, schedule.schedule_type, schedule.cron) == (
        "math.floor", Schedule.CRON, "0 3 * * *")

    with django_capture_on_commit_callbacks(execute=True):
        update_plugin_config(identifier="loyalty", active=False, changes={})
    assert not Schedule.objects.filter(name__startswith="plugin loyalty:").exists()
    assert Schedule.objects.filter(name="Deliver plugin events").exists()
