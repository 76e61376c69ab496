"""Stock in the admin (adjustments write the ledger as the staff user, the low-stock list, the
read-only ledger), the scheduled jobs and their schedules, and the demo catalog."""

from decimal import Decimal

import pytest
from django.contrib.admin import helpers
from django.contrib.messages import get_messages
from django_q.models import Schedule
from django_q.tasks import async_task, result

from backoffice.catalog.demo import DEMO_PRODUCTS, generate_catalog, load_demo_catalog
from backoffice.catalog.models import Category, Product, Variant
from backoffice.catalog.tasks import deactivate_sold_out_products
from backoffice.demo import DEMO_LOADERS
from backoffice.inventory.models import MovementReason, Stock, StockMovement, Warehouse
from backoffice.inventory.services import StockLevel, bulk_set_stock_levels, default_warehouse
from backoffice.inventory.tasks import detect_low_stock
from backoffice.plugin_host.protocols import ScheduledJob
from backoffice.schedules import SCHEDULED_JOBS, sync_schedules

pytestmark = pytest.mark.django_db


@pytest.fixture
def variant():
    product = Product.objects.create(name="Tee", slug="tee")
    return Variant.objects.create(product=product, sku="TEE-1", price="10.00", cost_price="4.00")


def _stock(variant, quantity: int, warehouse=None) -> Stock:
    warehouse = warehouse or default_warehouse()
    bulk_set_stock_levels(
        [StockLevel(variant_id=variant.pk, warehouse_id=warehouse.pk, quantity=quantity)]
    )
    return Stock.objects.get(variant=variant, warehouse=warehouse)


def _messages(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def _adjust(client, url, action, objects, **data):
    payload = {
        "action": action, helpers.ACTION_CHECKBOX_NAME: [o.pk for o in objects], "apply": "yes",
        "reason": MovementReason.RECEIVED, "reference": "PO-7", "note": "", **data,
    }
    return client.post(url, payload)


def test_adjusting_stock_writes_a_movement_by_the_staff_user(staff_client, variant):
    stock = _stock(variant, 10)
    response = _adjust(
        staff_client, "/admin/inventory/stock/", "adjust_stock", [stock], mode="add", quantity=5
    )
    assert response.status_code == 302
    stock.refresh_from_db()
    assert stock.quantity == 15
    movement = StockMovement.objects.filter(reason=MovementReason.RECEIVED).get()
    assert movement.quantity_change == 5
    assert movement.quantity_after == 15
    assert movement.actor.username == "boss"
    assert movement.reference == "PO-7"


def test_a_counted_level_sets_the_stock_and_records_the_difference(staff_client, variant):
    stock = _stock(variant, 10)
    _adjust(
        staff_client, "/admin/inventory/stock/", "adjust_stock", [stock],
        mode="set", quantity=7, reason=MovementReason.COUNT,
    )
    stock.refresh_from_db()
    assert stock.quantity == 7
    assert StockMovement.objects.get(reason=MovementReason.COUNT).quantity_change == -3


def test_removing_more_than_is_free_is_a_message_not_an_error_page(staff_client, variant):
    stock = _stock(variant, 5)
    Stock.objects.filter(pk=stock.pk).update(quantity_allocated=4)
    response = _adjust(
        staff_client, "/admin/inventory/stock/", "adjust_stock", [stock], mode="add", quantity=-3
    )
    assert response.status_code == 302
    assert any("allocated" in message for message in _messages(response))
    stock.refresh_from_db()
    assert stock.quantity == 5
    assert StockMovement.objects.count() == 1  # only the initial level


def test_stock_can_be_added_to_a_new_warehouse_from_the_variant_list(staff_client, variant):
    nairobi = Warehouse.objects.create(code="nairobi", name="Nairobi")
    response = _adjust(
        staff_client, "/admin/catalog/variant/", "adjust_variant_stock", [variant],
        warehouse=nairobi.pk, mode="add", quantity=12,
    )
    assert response.status_code == 302
    stock = Stock.objects.get(variant=variant, warehouse=nairobi)
    assert stock.quantity == 12
    assert stock.movements.get().actor.username == "boss"


def test_the_adjust_form_is_shown_before_anything_changes(staff_client, variant):
    stock = _stock(variant, 5)
    response = staff_client.post(
        "/admin/inventory/stock/",
        {"action": "adjust_stock", helpers.ACTION_CHECKBOX_NAME: [stock.pk]},
    )
    assert response.status_code == 200
    assert "Set to a counted level" in response.content.decode()
    assert StockMovement.objects.count() == 1


def test_stock_quantities_cannot_be_edited_in_a_form(staff_client, variant):
    stock = _stock(variant, 5)
    staff_client.post(
        f"/admin/inventory/stock/{stock.pk}/change/",
        {"quantity": 99, "quantity_allocated": 0, "low_stock_threshold": 2},
    )
    stock.refresh_from_db()
    assert (stock.quantity, stock.low_stock_threshold) == (5, 2)


def test_the_low_stock_list_shows_only_rows_at_or_below_their_threshold(staff_client, variant):
    other = Variant.objects.create(product=variant.product, sku="TEE-2", price="10.00")
    _stock(variant, 50)
    _stock(other, 2)
    response = staff_client.get("/admin/inventory/lowstock/")
    assert [s.variant.sku for s in response.context["cl"].result_list] == ["TEE-2"]


def test_the_stock_list_shows_value_status_and_a_link_to_the_history(staff_client, variant):
    stock = _stock(variant, 3)
    html = staff_client.get("/admin/inventory/stock/").content.decode()
    assert "USD 12.00" in html
    assert "Low" in html
    assert f"/admin/inventory/stockmovement/?stock__id__exact={stock.pk}" in html
    history = staff_client.get(f"/admin/inventory/stockmovement/?stock__id__exact={stock.pk}")
    assert [m.stock_id for m in history.context["cl"].result_list] == [stock.pk]


def test_the_ledger_is_read_only(staff_client, variant):
    stock = _stock(variant, 3)
    movement = stock.movements.get()
    assert staff_client.get("/admin/inventory/stockmovement/add/").status_code == 403
    staff_client.post(
        f"/admin/inventory/stockmovement/{movement.pk}/change/", {"quantity_change": 100}
    )
    assert StockMovement.objects.get().quantity_change == 3
    assert staff_client.post(
        f"/admin/inventory/stockmovement/{movement.pk}/delete/", {"post": "yes"}
    ).status_code == 403


def test_the_ledger_filters_by_reason_warehouse_date_and_searches_by_sku(staff_client, variant):
    _stock(variant, 3)
    warehouse = default_warehouse()
    for query in [
        "reason=import", f"stock__warehouse__id__exact={warehouse.pk}",
        "created_at_from=2020-01-01", "q=TEE-1", "q=nothing",
    ]:
        response = staff_client.get(f"/admin/inventory/stockmovement/?{query}")
        assert response.status_code == 200, query
        expected = 0 if query == "q=nothing" else 1
        assert len(response.context["cl"].result_list) == expected, query


# --- Jobs ----------------------------------------------------------------------------------


def _sold_out_fixture():
    sold_out = Product.objects.create(name="Gone", slug="gone")
    gone = Variant.objects.create(product=sold_out, sku="GONE-1", price="1.00")
    _stock(gone, 0)
    allocated = Product.objects.create(name="Promised", slug="promised")
    promised = Variant.objects.create(product=allocated, sku="PROM-1", price="1.00")
    stock = _stock(promised, 2)
    Stock.objects.filter(pk=stock.pk).update(quantity_allocated=2)
    mixed = Product.objects.create(name="Mixed", slug="mixed")
    Variant.objects.create(product=mixed, sku="MIX-1", price="1.00")
    _stock(Variant.objects.create(product=mixed, sku="MIX-2", price="1.00"), 4)
    inactive_with_stock = Product.objects.create(name="Hidden stock", slug="hidden-stock")
    Variant.objects.create(product=inactive_with_stock, sku="HID-1", price="1.00")
    _stock(
        Variant.objects.create(
            product=inactive_with_stock, sku="HID-2", price="1.00", is_active=False
        ),
        9,
    )
    Product.objects.create(name="Draft without variants", slug="draft")


def test_sold_out_products_are_unpublished_by_the_job(settings):
    settings.DEACTIVATE_SOLD_OUT_PRODUCTS = True
    _sold_out_fixture()
    task_id = async_task("backoffice.catalog.tasks.deactivate_sold_out_products")
    assert result(task_id) == 3
    assert set(Product.objects.filter(is_active=False).values_list("name", flat=True)) == {
        "Gone", "Promised", "Hidden stock",
    }
    assert deactivate_sold_out_products() == 0  # nothing left to do


def test_the_sold_out_job_can_be_turned_off(settings):
    settings.DEACTIVATE_SOLD_OUT_PRODUCTS = False
    _sold_out_fixture()
    assert deactivate_sold_out_products() == 0
    assert not Product.objects.filter(is_active=False).exists()


def test_the_low_stock_job_reports_every_low_row(variant, caplog):
    _stock(variant, 1)
    Variant.objects.create(product=variant.product, sku="TEE-2", price="10.00")
    with caplog.at_level("INFO"):
        task_id = async_task("backoffice.inventory.tasks.detect_low_stock")
    assert result(task_id) == 1
    assert detect_low_stock() == 1
    assert "Low stock: TEE-1" in caplog.text


def test_schedules_exist_after_migrate_and_a_sync_is_idempotent():
    names = {job.name for job in SCHEDULED_JOBS}
    assert set(Schedule.objects.filter(name__in=names).values_list("name", flat=True)) == names
    assert sync_schedules() == (0, 0)
    assert Schedule.objects.filter(name__in=names).count() == len(names)


def test_a_sync_updates_the_declared_parts_and_keeps_the_merchants_edits():
    job = SCHEDULED_JOBS[0]
    schedule = Schedule.objects.get(name=job.name)
    schedule.repeats = 3
    schedule.next_run = "2030-01-01T00:00Z"
    schedule.minutes = 999
    schedule.save()
    changed = ScheduledJob(
        name=job.name, func="backoffice.inventory.tasks.detect_low_stock", cron="*/5 * * * *",
    )
    assert sync_schedules([changed]) == (0, 1)
    schedule.refresh_from_db()
    assert (schedule.func, schedule.schedule_type, schedule.cron, schedule.minutes) == (
        changed.func, Schedule.CRON, "*/5 * * * *", None,
    )
    assert schedule.repeats == 3
    assert schedule.next_run.year == 2030
    assert sync_schedules([changed]) == (0, 0)


# --- Demo data -------------------------------------------------------------------------------


def test_the_demo_catalog_loads_once_with_a_three_level_tree_variants_and_stock():
    assert any(loader.__name__ == "_load_demo_catalog" for loader in DEMO_LOADERS)
    summary = load_demo_catalog()
    assert f"{DEMO_PRODUCTS} products" in summary
    assert Product.objects.count() == DEMO_PRODUCTS
    assert 28 <= Category.objects.count() <= 40
    assert set(Category.objects.values_list("level", flat=True)) == {0, 1, 2}
    assert Category.objects.get(path="clothing/men/shirts").get_ancestors().count() == 2
    variants_per_product = [
        p.variants.count() for p in Product.objects.prefetch_related("variants")[:50]
    ]
    assert min(variants_per_product) >= 1 and max(variants_per_product) <= 6
    assert Variant.objects.filter(compare_at_price__isnull=False).exists()
    assert Warehouse.objects.filter(code="nairobi").exists()
    quantities = list(Stock.objects.values_list("quantity", flat=True))
    assert 0 in quantities and any(1 <= q <= 5 for q in quantities)
    assert StockMovement.objects.count() == sum(1 for q in quantities if q)

    counts = (Product.objects.count(), Variant.objects.count(), StockMovement.objects.count())
    assert load_demo_catalog() == "Demo catalog: already loaded, left as it is."
    assert (Product.objects.count(), Variant.objects.count(), StockMovement.objects.count()) == (
        counts
    )


def test_the_generator_is_deterministic_and_refuses_a_prefix_in_use():
    first = generate_catalog(15, seed=9, sku_prefix="ONE")
    second = generate_catalog(15, seed=9, sku_prefix="TWO")
    assert first.variants == second.variants
    one = list(Variant.objects.filter(sku__startswith="ONE-").order_by("pk")
               .values_list("price", "option_values"))
    two = list(Variant.objects.filter(sku__startswith="TWO-").order_by("pk")
               .values_list("price", "option_values"))
    assert one == two
    assert all(isinstance(price, Decimal) for price, _ in one)
    assert second.categories == 0  # the tree is reused
    with pytest.raises(ValueError, match="ONE"):
        generate_catalog(1, seed=1, sku_prefix="ONE")


def test_the_generate_catalog_command_prints_what_it_made():
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("generate_catalog", "--products", "12", "--seed", "4", stdout=out)
    assert "12 products" in out.getvalue()
    assert Product.objects.count() == 12
