"""Staff journeys through the admin in a real browser, each as its role: a catalog manager
imports, finds, reprices and restocks; a fulfilment clerk prints, ships and delivers, and may
not refund; finance refunds part of an order and exports the refunds report; the owner switches
a plugin on with secrets that are never shown back, and sees the dashboard.

Each user is in its role's group (``backoffice.roles``), or, where the group does not exist,
given the journey's permissions directly (``make_staff``). The terminal summary says which."""

from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path

import pytest
from django.utils import timezone

from backoffice.catalog.models import Product, Variant
from backoffice.checkout import cart as carts
from backoffice.checkout.models import Cart
from backoffice.checkout.services import CheckoutRequest, place_order
from backoffice.inventory.models import Stock, StockMovement
from backoffice.inventory.services import Actor, adjust_stock
from backoffice.orders.models import Order, Refund, Shipment
from backoffice.orders.status import FulfilmentStatus, PaymentStatus
from backoffice.payments import services as payments
from backoffice.plugin_host.services import activate_plugins

SHOPIFY = Path(__file__).resolve().parent.parent / "data" / "shopify_products.csv"
ADDRESS = {"first_name": "Amina", "last_name": "Otieno", "line1": "Moi Avenue 1",
           "city": "Nairobi", "country": "KE", "phone": "+254700000001"}
ORDERS = "/admin/orders/order/"

# What each journey needs of its role, given directly when the role's group does not exist
# (``make_staff`` prefers the group: ``backoffice.roles`` defines the real ones). Names not
# defined are left out and reported in the summary.
CATALOG_MANAGER = [
    "imports.add_importjob", "imports.view_importjob", "imports.run_import",
    "catalog.view_product", "catalog.change_product", "catalog.view_variant",
    "catalog.change_variant", "catalog.view_category", "inventory.view_stock",
    "inventory.change_stock", "inventory.view_warehouse", "inventory.adjust_stock",
]
FULFILMENT_CLERK = [
    "orders.view_order", "orders.ship_order", "orders.deliver_order", "catalog.view_product",
    "inventory.view_stock",
]
FINANCE = ["orders.view_order", "orders.refund_order", "payments.view_payment",
           "reports.view_reports"]
OWNER = ["plugins.view_pluginconfig", "plugins.change_pluginconfig", "plugins.manage_plugins",
         "orders.view_order"]


@pytest.fixture
def shelf(warehouse):
    """Two things to sell, in stock, and the shipping and payment plugins on."""
    activate_plugins(["flat_rate_shipping", "manual_payment"])
    tee = Product.objects.create(name="Tee", slug="tee")
    small = Variant.objects.create(product=tee, sku="TEE-S", name="S", price="800.00")
    mug = Variant.objects.create(product=Product.objects.create(name="Mug", slug="mug"),
                                 sku="MUG", name="", price="300.00")
    for variant in (small, mug):
        adjust_stock(variant_id=variant.pk, quantity_change=50)
    return small, mug


def place(*items: tuple[str, int], key: str, paid: bool = True) -> Order:
    """An order through checkout, paid by hand (a manual payment) unless ``paid`` is False."""
    cart = Cart.objects.create()
    for sku, quantity in items:
        carts.add_to_cart(cart=cart, sku=sku, quantity=quantity)
    order, _created = place_order(cart, CheckoutRequest(
        shipping_address=ADDRESS, shipping_method="flat_rate", email="amina@example.com",
        payment_method="manual",
    ), idempotency_key=key)
    if paid:
        payments.record_manual_payment(order.pk, actor=Actor(label="till"))
    return Order.objects.get(pk=order.pk)


# --- catalog manager -----------------------------------------------------------------------------


def test_catalog_manager_imports_finds_reprices_and_restocks(page, make_staff, warehouse):
    manager = make_staff("Catalog manager", CATALOG_MANAGER)
    page.log_in_with_form(manager.username)

    # Upload the Shopify sample: the dry run runs (synchronously in tests) and reports.
    page.open("/admin/imports/importjob/add/")
    page.find('input[type=file][name="file"]', visible=False).send_keys(str(SHOPIFY))
    page.choose("file_format", "shopify")
    page.submit('button[name="_save"]')
    page.see("Checked: no errors, ready to import", css="#import-status")
    assert not Product.objects.filter(name="Linen Shirt").exists()  # a dry run writes nothing

    # "Run import" asks first; "Import now" imports.
    page.click(page.find("#run-import-link"))
    page.see("The import will write")
    page.click(page.link("Import now", css="button"))
    page.see("Import result", css="#import-result")
    page.see("Done", css="#import-status")
    shirt = Product.objects.get(name="Linen Shirt")
    assert shirt.variants.count() == 4

    # Find it by searching the product list, open it, change a variant's price.
    page.open("/admin/catalog/product/")
    search = page.find("#searchbar")
    search.send_keys("linen")
    page.submit("#searchbar-submit")
    page.click(page.link("Linen Shirt"))
    [sku_input] = [el for el in page.find_all('input[name$="-sku"]')
                   if el.get_attribute("value") == "LIN-SAND-M"]
    prefix = sku_input.get_attribute("name").removesuffix("-sku")
    page.fill(f"{prefix}-price", "44.50")
    page.submit('button[name="_save"]')
    page.see("was changed successfully")
    assert Variant.objects.get(sku="LIN-SAND-M").price == Decimal("44.50")
    assert Variant.objects.get(sku="LIN-SAND-L").price == Decimal("49.00")

    # Stock: find the row in the inventory admin and adjust it through its form.
    page.open("/admin/inventory/stock/?q=LIN-SAND-M")
    page.click(page.link("LIN-SAND-M", css="#result_list a"))
    page.click(page.link("Adjust stock"))
    page.see("Adjust the stock of LIN-SAND-M")
    page.choose("mode", "add")
    page.fill("quantity", "5")
    page.choose("reason", "received")
    page.fill("reference", "PO-77")
    page.click(page.link("Adjust stock", css="form button[type=submit]"))
    page.see("Stock adjusted for 1 row.")
    stock = Stock.objects.get(variant__sku="LIN-SAND-M", warehouse=warehouse)
    assert stock.quantity == 12  # 7 imported + 5 received
    movement = StockMovement.objects.filter(stock=stock).latest("id")
    assert (movement.quantity_change, movement.reference, movement.actor_id) == (
        5, "PO-77", manager.pk)


# --- fulfilment clerk ----------------------------------------------------------------------------


def test_fulfilment_clerk_ships_delivers_and_prints_the_packing_slip(page, make_staff, shelf):
    order = place(("TEE-S", 2), ("MUG", 1), key="clerk")
    clerk = make_staff("Fulfilment clerk", FULFILMENT_CLERK)
    page.log_in(clerk)

    # The orders to fulfil: this one.
    page.open(f"{ORDERS}?status=to_fulfil")
    page.click(page.link(str(order), css="#result_list a"))
    page.see("Paid", "Unfulfilled", css="#order-summary")

    # The packing slip, in its own tab: what to put in the parcel.
    first = page.driver.current_window_handle
    page.scroll_to(page.link("Packing slip", css="#order-summary a")).click()
    page.wait(lambda d: len(d.window_handles) == 2, "the packing slip did not open")
    page.driver.switch_to.window(next(h for h in page.driver.window_handles if h != first))
    page.ready()
    assert page.path() == f"{ORDERS}{order.pk}/packing-slip/"
    page.see("Packing slip", str(order), "Moi Avenue 1")
    slip = page.text()
    assert "TEE-S" in slip and "MUG" in slip
    page.driver.close()
    page.driver.switch_to.window(first)

    # Ship everything with a tracking number.
    page.click(page.link("Create shipment", css="#order-summary a"))
    page.fill("carrier", "G4S")
    page.fill("tracking_number", "G4S-7781")
    page.click(page.link("Create shipment", css="form button[type=submit]"))
    page.see("3 items left the shelf")
    page.see("G4S-7781")
    shipment = Shipment.objects.get(order=order)
    assert (shipment.carrier, shipment.tracking_number) == ("G4S", "G4S-7781")
    assert Order.objects.get(pk=order.pk).fulfilment_status == FulfilmentStatus.SHIPPED

    # Delivered: the summary's button posts, the order says so.
    page.click(page.link("Mark delivered", css="#order-summary button"))
    page.see(f"Order {order} marked delivered.")
    page.see("Delivered", css="#order-summary")
    assert Order.objects.get(pk=order.pk).fulfilment_status == FulfilmentStatus.DELIVERED


def test_fulfilment_clerk_cannot_refund(page, make_staff, shelf):
    order = place(("MUG", 1), key="clerk-refund")
    clerk = make_staff("Fulfilment clerk", FULFILMENT_CLERK)
    page.log_in(clerk)
    page.open(f"{ORDERS}{order.pk}/change/")
    page.see("Create shipment", css="#order-summary")  # the clerk's own actions are there

    refund_url = f"{ORDERS}{order.pk}/refund/"
    hrefs = [a.get_attribute("href") or "" for a in page.find_all("a")]
    assert not [h for h in hrefs if h.endswith(refund_url)], "a refund link is offered"
    assert "Record refund" not in page.text()
    assert page.status_of(refund_url) == 403
    assert page.status_of(refund_url, "POST") == 403
    # The same POST to an action the clerk may do is answered (its form, nothing to ship
    # chosen): the 403 above is the refund's permission, not the CSRF check.
    assert page.status_of(f"{ORDERS}{order.pk}/ship/", "POST") == 200
    assert not Refund.objects.exists() and not Shipment.objects.exists()


# --- finance -------------------------------------------------------------------------------------


def test_finance_refunds_part_of_an_order_and_exports_the_refunds_report(page, make_staff, shelf):
    order = place(("TEE-S", 1), ("MUG", 2), key="finance")  # USD 1,405.00 paid by hand
    finance = make_staff("Finance", FINANCE)
    page.log_in(finance)

    page.open(f"{ORDERS}{order.pk}/change/")
    page.click(page.link("Record refund", css="#order-summary a"))
    page.see("USD 1,405.00 can still be refunded")
    page.fill("amount", "100.00")
    page.fill("reason", "Late delivery")
    page.click(page.link("Record refund", css="form button[type=submit]"))
    page.see("Refund of USD 100.00 recorded.")

    # The order, its payment and its timeline say the same.
    page.see("Partially refunded", css="#order-summary")
    page.see("USD 1,405.00 (refunded USD 100.00)")
    page.see("Payment: paid → partially refunded", "Late delivery")
    order.refresh_from_db()
    [payment] = order.payments.all()
    [refund] = order.refunds.all()
    assert order.payment_status == PaymentStatus.PARTIALLY_REFUNDED
    assert order.refunded_total == payment.amount_refunded == refund.amount == Decimal("100")
    assert (refund.payment_id, refund.actor_label) == (payment.pk, finance.username)

    # The refunds report counts it today, and its CSV export says the same.
    page.click(page.link("Reports"))
    page.click(page.link("Refunds", css="#report-tabs a"))
    page.see("refunds made", "USD 100.00", css="#content")
    page.scroll_to(page.link("CSV", css="#report-exports a")).click()
    exported = page.downloaded(".csv")
    assert exported.name.startswith("refunds-")
    rows = list(csv.DictReader(exported.read_text(encoding="utf-8-sig").splitlines()))
    [today] = [row for row in rows if row["day"] == str(timezone.localdate())]
    assert (today["refunds made"], Decimal(today["refunded (USD)"])) == ("1", Decimal("100"))


# --- owner ---------------------------------------------------------------------------------------

SECRET_KEY = "sk_test_browser_9f8e7d6c5b4a"
WEBHOOK_SECRET = "whsec_browser_0a1b2c3d4e"


def test_owner_switches_stripe_on_with_secrets_never_shown_back(page, make_staff, shelf):
    from backoffice.plugin_host.loading import get_plugin_host
    from backoffice.plugin_host.models import PluginConfig

    place(("TEE-S", 2), ("MUG", 1), key="owner")  # USD 1,905.00 paid today, to fulfil
    owner = make_staff("Owner", OWNER)
    page.log_in(owner)
    page.open("/admin/plugins/pluginconfig/")
    page.click(page.link("stripe", css="#result_list a"))

    page.fill("setting__secret_key", SECRET_KEY)
    page.fill("setting__webhook_secret", WEBHOOK_SECRET)
    switch = page.find('input[name="active"]', visible=False)
    assert not switch.is_selected()
    page.scroll_to(switch).click()
    assert switch.is_selected()
    page.submit('button[name="_save"]')
    page.see("was changed successfully")

    row = PluginConfig.objects.get(identifier="stripe")
    assert row.active
    assert SECRET_KEY not in str(row.settings) and WEBHOOK_SECRET not in str(row.settings)
    assert get_plugin_host().config("stripe", stored=row.settings).values["secret_key"] == (
        SECRET_KEY)

    # Back on the plugin's page: the secrets are saved, and shown nowhere.
    page.open(f"/admin/plugins/pluginconfig/{row.pk}/change/")
    page.see("A value is saved; leave blank to keep it.")
    for name in ("setting__secret_key", "setting__webhook_secret"):
        field = page.find(f'input[name="{name}"]')
        assert field.get_attribute("type") == "password"
        assert field.get_attribute("value") == ""
    html = page.html()
    assert SECRET_KEY not in html and WEBHOOK_SECRET not in html
    assert "sk_test_browser" not in html and "whsec_browser" not in html

    # The dashboard: today's sales, and the order waiting to be fulfilled.
    page.open("/admin/")
    page.see("USD 1,905.00", css="#content")
    to_fulfil = page.find(f'#content a[href="{ORDERS}?status=to_fulfil"]')
    assert to_fulfil.text.strip() == "1"
