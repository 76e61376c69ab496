"""Category paths stay true through renames and moves; stock changes write the ledger."""

import pytest

from backoffice.catalog.models import Category, Product, Variant
from backoffice.catalog.services import CategoryMoveError, move_category
from backoffice.inventory.models import Stock, StockMovement
from backoffice.inventory.services import (
    InsufficientStock,
    StockLevel,
    adjust_stock,
    bulk_set_stock_levels,
    default_warehouse,
    set_stock_level,
)

pytestmark = pytest.mark.django_db


def test_renaming_and_moving_a_category_rewrites_every_path_below_it():
    men = Category.objects.create(name="Men", slug="men")
    shirts = Category.objects.create(name="Shirts", slug="shirts", parent=men)
    polo = Category.objects.create(name="Polo", slug="polo", parent=shirts)
    assert polo.path == "men/shirts/polo"

    men.slug = "gents"
    men.save()
    polo.refresh_from_db()
    assert polo.path == "gents/shirts/polo"

    women = Category.objects.create(name="Women", slug="women")
    move_category(category=shirts, parent=women)  # `shirts` in memory still says "men/..."
    assert list(women.get_descendants().values_list("path", flat=True)) == [
        "women/shirts",
        "women/shirts/polo",
    ]
    move_category(category=shirts, parent=None)
    polo.refresh_from_db()
    assert polo.path == "shirts/polo"


def test_a_category_cannot_move_under_its_own_descendant():
    root = Category.objects.create(name="Root", slug="root")
    child = Category.objects.create(name="Child", slug="child", parent=root)
    with pytest.raises(CategoryMoveError):
        move_category(category=root, parent=child)
    root.refresh_from_db()
    assert root.parent is None


def test_a_move_onto_a_sibling_with_the_same_slug_is_refused():
    a = Category.objects.create(name="A", slug="a")
    b = Category.objects.create(name="B", slug="b")
    Category.objects.create(name="Sale", slug="sale", parent=a)
    sale_b = Category.objects.create(name="Sale", slug="sale", parent=b)
    with pytest.raises(CategoryMoveError, match="sale"):
        move_category(category=sale_b, parent=a)


@pytest.fixture
def variant():
    product = Product.objects.create(name="Tee", slug="tee")
    return Variant.objects.create(product=product, sku="TEE-1", price="10.00")


def test_stock_cannot_drop_below_what_is_allocated(variant):
    stock = adjust_stock(variant_id=variant.pk, quantity_change=5)
    Stock.objects.filter(pk=stock.pk).update(quantity_allocated=3)
    with pytest.raises(InsufficientStock):
        set_stock_level(variant_id=variant.pk, quantity=2)
    with pytest.raises(InsufficientStock):
        adjust_stock(variant_id=variant.pk, quantity_change=-3)
    stock.refresh_from_db()
    assert stock.quantity == 5
    assert StockMovement.objects.count() == 1


def test_every_change_writes_a_movement_with_what_it_left(variant):
    other = Variant.objects.create(product=variant.product, sku="TEE-2", price="10.00")
    warehouse = default_warehouse().pk
    adjust_stock(variant_id=variant.pk, quantity_change=5)
    set_stock_level(variant_id=variant.pk, quantity=7)
    changed = bulk_set_stock_levels(
        [StockLevel(variant.pk, warehouse, 9), StockLevel(other.pk, warehouse, 4),
         StockLevel(variant.pk, warehouse, 9)]
    )
    assert changed == 2
    movements = list(StockMovement.objects.order_by("id"))
    assert [(m.quantity_change, m.quantity_after) for m in movements] == [
        (5, 5), (2, 7), (2, 9), (4, 4)
    ]
    # Setting the same levels again changes nothing and writes nothing.
    assert bulk_set_stock_levels([StockLevel(variant.pk, warehouse, 9)]) == 0
    assert StockMovement.objects.count() == 4


def test_stock_low_fires_once_when_stock_falls_to_its_threshold(
    variant, register_plugin, django_capture_on_commit_callbacks
):
    from backoffice.hookspecs import hookimpl
    from backoffice.plugin_host.models import PluginEvent

    heard = []

    class Buyer:
        hookspec_version = ">=1.0,<2"

        @hookimpl
        def stock_low(self, sku, available, threshold):
            heard.append((sku, available, threshold))

    register_plugin(Buyer(), "buyer")
    with django_capture_on_commit_callbacks(execute=True):
        adjust_stock(variant_id=variant.pk, quantity_change=10)   # 10 > 5: fine
        adjust_stock(variant_id=variant.pk, quantity_change=-5)   # 5: falls to the threshold
        adjust_stock(variant_id=variant.pk, quantity_change=-2)   # 3: still low, no repeat
        set_stock_level(variant_id=variant.pk, quantity=20)       # restocked
        bulk_set_stock_levels([StockLevel(variant.pk, default_warehouse().pk, 1)])  # falls again
    assert heard == [("TEE-1", 5, 5), ("TEE-1", 1, 5)]
    assert PluginEvent.objects.filter(hook="stock_low").count() == 2
