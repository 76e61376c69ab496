"""Stock that is not tracked, and backorders (issue 14: "Imports that keep stock true").

A variant whose stock is not tracked (Shopify's blank inventory tracker, WooCommerce's unmanaged
stock) is always available and never sold out; a backorder variant (Shopify "continue",
WooCommerce backorders) allocates what the shelf has and sells on. Imports keep that meaning, say
which products would have nothing to sell, and the sold-out job leaves freshly imported products
alone for an hour, telling their import.
"""

from __future__ import annotations

import contextlib
import csv
import io
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connections
from django.test import Client
from django.utils import timezone

from backoffice.catalog.models import Product, Variant
from backoffice.catalog.services import refresh_listings, sold_out_products
from backoffice.catalog.tasks import deactivate_sold_out_products
from backoffice.checkout import cart as carts
from backoffice.checkout.models import Cart
from backoffice.checkout.services import CheckoutError, CheckoutRequest, place_order
from backoffice.imports.exports import export_catalog
from backoffice.imports.models import ImportJob
from backoffice.imports.services import import_catalog
from backoffice.inventory.models import MovementReason, Stock, StockMovement, Warehouse
from backoffice.inventory.selectors import (
    low_stock_rows,
    stock_status_condition,
    with_product_stock,
    with_variant_stock,
)
from backoffice.inventory.services import adjust_stock
from backoffice.orders import services as orders
from backoffice.orders.models import Allocation
from backoffice.plugin_host.services import activate_plugins

pytestmark = pytest.mark.django_db
DATA = Path(__file__).parent / "data"
ADDRESS = {"first_name": "Amina", "line1": "Moi Avenue 1", "city": "Nairobi", "country": "KE"}


@pytest.fixture(autouse=True)
def _shipping():
    activate_plugins(["flat_rate_shipping"])


def run(data: bytes | str, file_format: str, **options):
    if isinstance(data, str):
        data = (DATA / data).read_bytes()
    return import_catalog(stream=io.BytesIO(data), filename="file.csv", file_format=file_format,
                          **options)


def native_file(*rows: dict) -> bytes:
    columns = ["handle", "name", "published", "sku", "price", "variant_active",
               "track_inventory", "allow_backorder", "stock:main"]
    out = io.StringIO()
    writer = csv.DictWriter(out, columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue().encode()


def make(sku: str, *, stock: int | None = None, **flags) -> Variant:
    product = Product.objects.create(name=sku.title(), slug=sku.lower())
    variant = Variant.objects.create(product=product, sku=sku, price="10.00", **flags)
    if stock is not None:
        adjust_stock(variant_id=variant.pk, quantity_change=stock)
    return variant


def buy(*items, key: str | None = None):
    cart = Cart.objects.create()
    for sku, quantity in items:
        carts.add_to_cart(cart=cart, sku=sku, quantity=quantity)
    order, _ = place_order(cart, CheckoutRequest(shipping_address=ADDRESS,
                                                 shipping_method="flat_rate",
                                                 email="amina@example.com"),
                           idempotency_key=key or uuid.uuid4().hex)
    return order


def levels(variant: Variant) -> list[tuple[int, int]]:
    return list(Stock.objects.filter(variant=variant).order_by("warehouse__code")
                .values_list("quantity", "quantity_allocated"))


def never_negative() -> None:
    assert not Stock.objects.filter(quantity__lt=0).exists()
    assert not Stock.objects.filter(quantity_allocated__lt=0).exists()


# --- The platforms' sample files -----------------------------------------------------------------


def test_the_sample_files_keep_their_stock_meaning_and_survive_the_sold_out_job(client):
    assert run("woocommerce_products.csv", "woocommerce").errors == []
    assert run("shopify_products.csv", "shopify").errors == []
    flags = dict(
        (sku, (track, backorder))
        for sku, track, backorder in Variant.objects.values_list(
            "sku", "track_inventory", "allow_backorder")
    )
    assert flags == {
        # WooCommerce: "In stock?" 1 with an empty Stock is unmanaged stock; "notify" allows
        # backorders; a number in Stock is managed stock.
        "rain-jacket-red": (False, False), "rain-jacket-navy": (True, True),
        "thermos-05": (True, False),
        # Shopify: a blank tracker is not tracked; policy "continue" sells when out of stock.
        "TOTE-1": (False, False), "LIN-OLV-M": (True, True), "LIN-SAND-M": (True, False),
        "LIN-SAND-L": (True, False), "LIN-OLV-L": (True, False), "SOCK-36": (True, False),
        "SOCK-41": (True, False),
    }
    assert not Stock.objects.filter(variant__sku="rain-jacket-red").exists()
    assert Stock.objects.get(variant__sku="TOTE-1").quantity == 40, "the count is kept"
    # Re-importing changes nothing, the flags included.
    again = run("woocommerce_products.csv", "woocommerce")
    assert again.total("created") == again.total("updated") == 0

    # An hour and more later, the sold-out job runs: nothing that sells is unpublished.
    Product.objects.update(imported_at=timezone.now() - timedelta(hours=2))
    published = set(Product.objects.filter(is_active=True).values_list("slug", flat=True))
    assert published == {"rain-jacket", "thermos-05", "linen-shirt"}
    assert deactivate_sold_out_products() == 0
    assert set(Product.objects.filter(is_active=True).values_list("slug", flat=True)) == published
    items = client.get("/api/v1/products?page_size=50").json()["items"]
    assert {item["slug"] for item in items} == published
    jacket = next(item for item in items if item["slug"] == "rain-jacket")
    assert jacket["in_stock"] is True
    assert [v["availability"] for v in jacket["variants"]] == ["in_stock"]  # navy is inactive
    assert client.get("/api/v1/products?in_stock=true&page_size=50").json()["count"] == 3


def test_woocommerce_stock_columns_map_to_tracking_and_backorders():
    header = ("Type,SKU,Name,Published,Manage stock?,In stock?,Stock,Backorders allowed?,"
              "Regular price,Parent")
    rows = [
        "simple,counted,Counted,1,,1,4,0,5,",          # managed: 4 in stock
        "simple,free,Free,1,,1,,0,5,",                  # unmanaged, in stock: not tracked
        "simple,gone,Gone,1,,0,,0,5,",                  # unmanaged, out of stock: 0 in stock
        "simple,ordered,Ordered,1,,backorder,,,5,",     # unmanaged, on backorder
        "simple,told,Told,1,0,1,7,notify,5,",           # Manage stock? 0 says it directly
        "simple,later,Later,1,,1,0,1,5,",               # managed, 0, backorders allowed
    ]
    result = run("\n".join([header, *rows]).encode(), "woocommerce")
    assert result.errors == []
    got = {v.sku: (v.track_inventory, v.allow_backorder, levels(v)) for v in Variant.objects.all()}
    assert got == {
        "counted": (True, False, [(4, 0)]), "free": (False, False, []),
        "gone": (True, False, [(0, 0)]), "ordered": (False, True, []),
        "told": (False, True, [(7, 0)]), "later": (True, True, [(0, 0)]),
    }
    # Only the product out of stock, with nothing else to sell, is named.
    named = [w.message for w in result.warnings if "nothing to sell" in w.message]
    assert len(named) == 1 and "'Gone' (gone)" in named[0]


# --- The dry run says which products would have nothing to sell ----------------------------------


def test_a_dry_run_names_every_product_left_with_nothing_to_sell():
    kept = make("KEPT-1", stock=3)
    Variant.objects.create(product=kept.product, sku="KEPT-2", price="10.00")
    data = native_file(
        {"handle": "empty", "name": "Empty Shelf", "sku": "E-1", "price": "5", "stock:main": "0"},
        {"handle": "empty", "name": "Empty Shelf", "sku": "E-2", "price": "5"},
        {"handle": "made-to-order", "name": "Made to order", "sku": "M-1", "price": "5",
         "track_inventory": "false"},
        {"handle": "preorder", "name": "Preorder", "sku": "P-1", "price": "5",
         "allow_backorder": "true", "stock:main": "0"},
        {"handle": "hidden", "name": "Hidden", "published": "false", "sku": "H-1", "price": "5"},
        # An existing product: the file sets this variant to 0, the one it leaves out has stock.
        {"handle": kept.product.slug, "name": "Kept", "sku": "KEPT-2", "price": "10.00",
         "stock:main": "0"},
        {"handle": "stocked", "name": "Stocked", "sku": "S-1", "price": "5", "stock:main": "2",
         "variant_active": "true"},
        {"handle": "stocked-off", "name": "Only an inactive variant has stock", "sku": "O-1",
         "price": "5", "stock:main": "9", "variant_active": "false"},
    )
    result = run(data, "native", dry_run=True)
    assert result.errors == [] and not result.written
    named = [(w.row, w.column, w.message) for w in result.warnings
             if "nothing to sell" in w.message]
    assert [(row, column) for row, column, _ in named] == [(2, "stock"), (9, "stock")]
    assert "'Empty Shelf' (empty)" in named[0][2]
    assert "'Only an inactive variant has stock' (stocked-off)" in named[1][2]
    assert Product.objects.count() == 1, "a dry run writes nothing"
    # The command line prints the same warnings (the admin shows the job's dry run result).
    assert result.as_dict()["warning_count"] == len(result.warnings) >= 2


# --- Checkout, shipping, cancelling and refunds -----------------------------------------------


def test_an_untracked_variant_sells_ships_and_refunds_without_touching_stock():
    free = make("FREE", track_inventory=False)  # no stock row at all
    zero = make("ZERO", track_inventory=False, stock=0)  # a row with 0 on hand
    cart = Cart.objects.create()
    carts.add_to_cart(cart=cart, sku="FREE", quantity=50)
    assert carts.view_cart(cart).lines[0].purchasable
    order = buy(("FREE", 5), ("ZERO", 2))
    assert not Allocation.objects.filter(line__order=order).exists()
    assert not StockMovement.objects.exclude(reason=MovementReason.ADJUSTMENT).exists()
    orders.mark_paid(order)
    free_line = order.lines.get(sku="FREE")
    orders.create_shipment(order, orders.ShipmentRequest(lines={free_line.pk: 3}))
    orders.record_refund(order, orders.RefundRequest(lines={free_line.pk: 2}))  # unshipped
    orders.record_refund(order, orders.RefundRequest(lines={free_line.pk: 1}, restock=True))
    orders.create_shipment(order, orders.ShipmentRequest())
    order.refresh_from_db()
    assert order.lines.get(sku="FREE").quantity_to_ship == 0
    assert order.lines.get(sku="ZERO").quantity_shipped == 2
    assert levels(free) == [] and levels(zero) == [(0, 0)]
    cancelled = buy(("ZERO", 4))
    orders.cancel_order(cancelled)
    assert levels(zero) == [(0, 0)]
    assert not StockMovement.objects.exclude(reason=MovementReason.ADJUSTMENT).exists()
    never_negative()


def test_a_backorder_variant_allocates_the_shelf_and_ships_the_rest_once_received():
    variant = make("PRE", stock=2, allow_backorder=True)
    order = buy(("PRE", 5))
    assert levels(variant) == [(2, 2)], "the 2 on the shelf are promised, 3 are backordered"
    orders.mark_paid(order)
    with pytest.raises(orders.OrderError) as refused:
        orders.create_shipment(order, orders.ShipmentRequest())
    assert refused.value.code == "backordered" and "PRE (3 backordered, 0 in stock)" in str(
        refused.value)
    assert levels(variant) == [(2, 2)] and not order.shipments.exists(), "nothing changed"

    adjust_stock(variant_id=variant.pk, quantity_change=4, reason=MovementReason.RECEIVED)
    orders.create_shipment(order, orders.ShipmentRequest())
    assert levels(variant) == [(1, 0)], "5 left the shelf: the 2 promised and 3 received"
    shipped = StockMovement.objects.get(reason=MovementReason.SHIPMENT)
    assert (shipped.quantity_change, shipped.allocated_change) == (-5, -2)
    orders.record_refund(order, orders.RefundRequest(lines={order.lines.get().pk: 1},
                                                     restock=True))
    assert levels(variant) == [(2, 0)], "a returned unit goes back on its shelf"

    # Cancelled or refunded before shipping: only what was allocated goes back.
    later = buy(("PRE", 3))
    assert levels(variant) == [(2, 2)]
    orders.mark_paid(later)
    orders.record_refund(later, orders.RefundRequest(lines={later.lines.get().pk: 1}))
    assert levels(variant) == [(2, 2)], "the backordered unit is refunded first"
    orders.record_refund(later, orders.RefundRequest())
    assert levels(variant) == [(2, 0)]
    never_negative()


def test_tracked_variants_still_refuse_to_oversell():
    make("LAST", stock=2)
    with pytest.raises(carts.CartError):
        carts.add_to_cart(cart=Cart.objects.create(), sku="LAST", quantity=3)
    first = Cart.objects.create()
    carts.add_to_cart(cart=first, sku="LAST", quantity=2)
    buy(("LAST", 2))
    with pytest.raises(CheckoutError) as refused:
        place_order(first, CheckoutRequest(shipping_address=ADDRESS, shipping_method="flat_rate",
                                           email="b@example.com"), idempotency_key="late")
    assert refused.value.code == "insufficient_stock"
    assert refused.value.lines == [{"sku": "LAST", "available": 0, "requested": 2}]
    never_negative()


# --- What reads stock knows it ------------------------------------------------------------------


def test_listings_statuses_low_stock_and_the_sold_out_job_treat_them_as_available():
    untracked = make("UNT", track_inventory=False, stock=0)
    backorder = make("BACK", allow_backorder=True, stock=1)
    tracked = make("OUT", stock=0)
    Product.objects.update(is_in_stock=False)
    refresh_listings()
    stocked = dict(Product.objects.values_list("slug", "is_in_stock"))
    assert stocked == {"unt": True, "back": True, "out": False}
    assert set(sold_out_products().values_list("slug", flat=True)) == {"out"}
    statuses = dict(with_variant_stock(Variant.objects.all()).values_list("sku", "stock_status"))
    assert statuses == {"UNT": "in_stock", "BACK": "in_stock", "OUT": "out"}
    products = dict(with_product_stock(Product.objects.all()).values_list("slug", "stock_status"))
    assert products == {"unt": "in_stock", "back": "in_stock", "out": "out"}
    for status in ("in_stock", "low", "out"):
        condition = stock_status_condition(status, per="variant__product")
        by_filter = set(Product.objects.filter(condition).values_list("slug", flat=True))
        assert by_filter == {slug for slug, s in products.items() if s == status}, status
    # The low-stock report watches the shelf of tracked variants, backorder ones included.
    assert set(low_stock_rows().values_list("variant__sku", flat=True)) == {"BACK", "OUT"}
    assert (untracked.track_inventory, backorder.allow_backorder, tracked.sells_without_stock) == (
        False, True, False)


def test_the_admin_shows_and_filters_the_flags(staff_client):
    make("UNT", track_inventory=False)
    make("OUT", stock=0)
    page = staff_client.get("/admin/catalog/product/?stock_status=out")
    assert [p.slug for p in page.context["cl"].result_list] == ["out"]
    page = staff_client.get("/admin/catalog/variant/?track_inventory__exact=0")
    assert [v.sku for v in page.context["cl"].result_list] == ["UNT"]
    assert "not tracked" in page.content.decode()
    change = staff_client.get(f"/admin/catalog/variant/{Variant.objects.get(sku='UNT').pk}/change/")
    assert 'name="track_inventory"' in change.content.decode()
    assert 'name="allow_backorder"' in change.content.decode()


# --- Export round trip ---------------------------------------------------------------------------


def test_the_native_export_round_trips_the_flags():
    make("UNT", track_inventory=False)
    make("BACK", allow_backorder=True, stock=1)
    make("PLAIN", stock=1)
    buffer = io.BytesIO()
    export_catalog(stream=buffer, filename="catalog.csv")
    exported = buffer.getvalue()
    rows = {r["sku"]: r for r in csv.DictReader(io.StringIO(exported.decode()))}
    assert [(rows[s]["track_inventory"], rows[s]["allow_backorder"]) for s in
            ("UNT", "BACK", "PLAIN")] == [("false", "false"), ("true", "true"), ("true", "false")]
    Variant.objects.update(track_inventory=True, allow_backorder=False)
    result = run(exported, "native")
    assert result.counts["variants"] == {"unchanged": 1, "updated": 2}
    flags = dict((s, (t, b)) for s, t, b in
                 Variant.objects.values_list("sku", "track_inventory", "allow_backorder"))
    assert flags == {"UNT": (False, False), "BACK": (True, True), "PLAIN": (True, False)}
    assert run(exported, "native").total("updated") == 0


# --- The sold-out job and fresh imports -----------------------------------------------------------


def test_the_sold_out_job_skips_a_fresh_import_and_says_so_on_the_import_job(caplog,
                                                                              staff_client):
    job = ImportJob.objects.create(file="imports/catalog.csv", file_format="native")
    data = native_file(
        {"handle": "soon", "name": "Coming Soon", "sku": "SOON-1", "price": "5",
         "stock:main": "0"},
    )
    result = run(data, "native", reference=f"import #{job.pk}")
    assert result.written
    Product.objects.create(name="Old", slug="old")  # sold out, never imported
    Variant.objects.create(product=Product.objects.get(slug="old"), sku="OLD-1", price="1.00")
    with caplog.at_level("WARNING"):
        assert deactivate_sold_out_products() == 1
    assert dict(Product.objects.values_list("slug", "is_active")) == {"soon": True, "old": False}
    job.refresh_from_db()
    (note,) = job.notes
    assert note["kind"] == "sold_out_skipped" and "soon" in note["message"]
    assert "less than 60 minutes ago" in note["message"]
    assert f"import #{job.pk}" in caplog.text and "soon" in caplog.text
    page = staff_client.get(f"/admin/imports/importjob/{job.pk}/change/").content.decode()
    assert 'id="import-notes"' in page and "imported less than 60 minutes ago: soon" in page
    deactivate_sold_out_products()  # the next run says it again in the log, not on the job
    job.refresh_from_db()
    assert len(job.notes) == 1
    # An hour later it is a sold-out product like any other.
    product = Product.objects.get(slug="soon")
    assert product.import_reference == f"import #{job.pk}"
    Product.objects.filter(pk=product.pk).update(imported_at=timezone.now() - timedelta(hours=1,
                                                                                       minutes=1))
    assert deactivate_sold_out_products() == 1
    # A re-import that changes nothing does not mark the product again.
    imported_at = Product.objects.values_list("imported_at", flat=True).get(pk=product.pk)
    run(data, "native", reference="import #0")
    assert Product.objects.values_list("imported_at", flat=True).get(pk=product.pk) == imported_at


# --- Under real concurrency (PostgreSQL) ----------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_buyers_racing_for_a_backorder_variant_all_buy_and_the_shelf_is_exact():
    Warehouse.objects.get_or_create(code="main", defaults={"name": "Main", "is_default": True})
    activate_plugins(["flat_rate_shipping"])
    variant = make("HOT-PRE", stock=10, allow_backorder=True)
    tracked = make("HOT-OUT", stock=5)
    tokens = []
    for n in range(40):
        cart = Cart.objects.create()
        carts.add_to_cart(cart=cart, sku="HOT-PRE", quantity=1)
        if n % 4 == 0:  # some carts hold a tracked SKU too: rows locked together, in key order
            carts.add_to_cart(cart=cart, sku="HOT-OUT", quantity=1)
        tokens.append(str(cart.token))
    start = threading.Barrier(20)

    def checkout(token: str) -> int:
        try:
            with contextlib.suppress(threading.BrokenBarrierError):
                start.wait(timeout=10)
            return Client().post(
                "/api/v1/checkout", {"shipping_method": "flat_rate", "shipping_address": ADDRESS,
                                     "email": "buyer@example.com"},
                content_type="application/json", HTTP_X_CART_TOKEN=token,
                HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex,
            ).status_code
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = Counter(pool.map(checkout, tokens))
    # 10 carts hold the tracked SKU with 5 units: 5 of them are refused, everyone else buys.
    assert statuses == {201: 35, 409: 5}, statuses
    assert levels(variant) == [(10, 10)], "the shelf is promised exactly, never more"
    assert levels(tracked) == [(5, 5)]
    never_negative()
