"""The sales rollup, the dashboard and the reports.

Orders are made through the real services (checkout, payment, cancellation, refunds) and then
moved to past days by rewriting their timestamps. Expected figures come from plain aggregates
over the orders written here, a different path from the rollup's (one UNION query added up in
Python), so a test compares two computations of the same definition:

- an order counts on the day it was paid (``paid_at``, the store's day); never paid, no sale;
- refunds (succeeded) count on the day they were recorded;
- net = gross (subtotal) - discounts + shipping - refunds.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.db.models import Count, Max, Sum
from django.test import override_settings
from django.utils import timezone

from backoffice.admin_filters import start_of_day
from backoffice.catalog.models import Category, Product, Variant
from backoffice.checkout import cart as carts
from backoffice.checkout.models import Cart
from backoffice.checkout.services import CheckoutRequest, place_order
from backoffice.inventory.services import adjust_stock
from backoffice.money import format_money
from backoffice.orders import services as orders
from backoffice.orders.models import Order, OrderLine, Refund, Shipment
from backoffice.payments.models import Payment
from backoffice.plugin_host.services import activate_plugins
from backoffice.promotions.models import Coupon
from backoffice.reports import rollup
from backoffice.reports.models import (
    DailyBreakdown,
    DailySales,
    Dimension,
    MonthlyBreakdown,
    MonthlyBreakdownTotal,
)
from backoffice.reports.selectors import breakdown, daily_series, dashboard_sales, whole_months
from backoffice.schedules import SCHEDULED_JOBS

pytestmark = pytest.mark.django_db

ADDRESS = {"first_name": "Amina", "last_name": "Otieno", "line1": "Moi Avenue 1",
           "city": "Nairobi", "country": "KE", "phone": "+254700000001"}
REPORTS = "/admin/reports/dailysales/"
KINDS = ["sales", "products", "categories", "providers", "coupons", "refunds"]


@pytest.fixture(autouse=True)
def _plugins():
    activate_plugins(["flat_rate_shipping", "manual_payment"])


@pytest.fixture
def shelf():
    clothing = Category.objects.create(name="Clothing", slug="clothing")
    kitchen = Category.objects.create(name="Kitchen", slug="kitchen")
    tee = Product.objects.create(name="Tee", slug="tee", category=clothing)
    mug = Product.objects.create(name="Mug", slug="mug", category=kitchen)
    loose = Product.objects.create(name="Sticker", slug="sticker")  # no category
    for product, sku, price in ((tee, "TEE", "800.00"), (mug, "MUG", "300.00"),
                                (loose, "STICK", "50.00")):
        variant = Variant.objects.create(product=product, sku=sku, name="", price=price)
        adjust_stock(variant_id=variant.pk, quantity_change=500)
    Coupon.objects.create(code="SAVE10", kind=Coupon.Kind.PERCENTAGE, value=Decimal("10"))
    return {"tee": tee, "mug": mug, "sticker": loose}


def at(day: dt.date, hour: int = 12, minute: int = 0) -> dt.datetime:
    """A moment of the store's ``day``."""
    return start_of_day(day) + dt.timedelta(hours=hour, minutes=minute)


def place(*items, coupon: str = "", method: str = "manual", key: str = "") -> Order:
    cart = Cart.objects.create()
    for sku, quantity in items:
        carts.add_to_cart(cart=cart, sku=sku, quantity=quantity)
    request = CheckoutRequest(shipping_method="flat_rate", shipping_address=ADDRESS,
                              email="amina@example.com", payment_method=method,
                              coupon_code=coupon)
    order, _ = place_order(cart, request, idempotency_key=key or f"k{Cart.objects.count()}")
    return order


def paid(order: Order, moment: dt.datetime, method: str = "") -> Order:
    orders.mark_paid(order)
    fields = {"paid_at": moment}
    if method:
        fields["payment_method"] = method
    Order.objects.filter(pk=order.pk).update(**fields)
    order.refresh_from_db()
    return order


def refund(order: Order, moment: dt.datetime, **request) -> Refund:
    made = orders.record_refund(order, orders.RefundRequest(**request))
    Refund.objects.filter(pk=made.pk).update(created_at=moment)
    return made


def expected(first: dt.date, last: dt.date, currency: str = "USD") -> dict:
    """The figures of [first, last], from plain aggregates over the orders."""
    start, end = start_of_day(first), start_of_day(last + dt.timedelta(days=1))
    sold = Order.objects.filter(paid_at__gte=start, paid_at__lt=end, currency=currency)
    totals = sold.aggregate(orders=Count("pk"), gross=Sum("subtotal"),
                            discounts=Sum("discount_total"), shipping=Sum("shipping_total"))
    lines = OrderLine.objects.filter(order__in=sold)
    refunds = Refund.objects.filter(status=Refund.Status.SUCCEEDED, created_at__gte=start,
                                    created_at__lt=end, order__currency=currency)
    money = {name: totals[name] or Decimal("0") for name in ("gross", "discounts", "shipping")}
    refunded = refunds.aggregate(total=Sum("amount"))["total"] or Decimal("0")
    products = {}
    for row in lines.values("product_id_snapshot").annotate(
            units=Sum("quantity"), net=Sum("total"), discount=Sum("discount_amount"),
            orders=Count("order", distinct=True)):
        products[str(row["product_id_snapshot"])] = row
    providers = {row["payment_method"]: row for row in sold.values("payment_method").annotate(
        orders=Count("pk"), total=Sum("total"))}
    provider_refunds = {row["order__payment_method"]: row["amount"] for row in refunds.values(
        "order__payment_method").annotate(amount=Sum("amount"))}
    coupons = {row["coupon_code"].upper(): row for row in sold.exclude(coupon_code="").values(
        "coupon_code").annotate(orders=Count("pk"), discount=Sum("discount_total"))}
    return {
        "orders": totals["orders"], **money,
        "items": lines.aggregate(units=Sum("quantity"))["units"] or 0,
        "refunds": refunded, "refund_count": refunds.count(),
        "net": money["gross"] - money["discounts"] + money["shipping"] - refunded,
        "products": products, "providers": providers, "provider_refunds": provider_refunds,
        "coupons": coupons,
    }


def assert_day_matches(day: dt.date) -> None:
    want = expected(day, day)
    row = DailySales.objects.get(day=day, currency="USD")
    for name in ("orders", "items", "gross", "discounts", "shipping", "refunds",
                 "refund_count", "net"):
        assert getattr(row, name) == want[name], (day, name)
    parts = DailyBreakdown.objects.filter(day=day, currency="USD")
    products = {p.key: p for p in parts.filter(dimension=Dimension.PRODUCT)}
    for key, line in want["products"].items():
        assert products[key].items == line["units"], (day, key)
        assert products[key].orders == line["orders"], (day, key)
        assert products[key].gross - products[key].discounts == line["net"], (day, key)
        assert products[key].discounts == line["discount"], (day, key)
    providers = {p.key: p for p in parts.filter(dimension=Dimension.PROVIDER)}
    for method, figures in want["providers"].items():
        refunded = want["provider_refunds"].get(method, Decimal("0"))
        assert providers[method].orders == figures["orders"]
        assert providers[method].net == figures["total"] - refunded
    assert sum(p.net for p in providers.values()) == row.net, "providers add up to the day"
    coupons = {p.key: p for p in parts.filter(dimension=Dimension.COUPON)}
    assert {k for k, p in coupons.items() if p.orders} == set(want["coupons"])
    for code, figures in want["coupons"].items():
        assert coupons[code].orders == figures["orders"]
        assert coupons[code].discounts == figures["discount"]


@pytest.fixture
def history(shelf):
    """Sales over the last four days and today: coupons, two providers, a cancelled unpaid
    order, a paid order cancelled and refunded, refunds of lines and of an amount on a later
    day, and a sale in another currency (from before a change of the store's currency)."""
    today = timezone.localdate()
    d3, d2, d1 = (today - dt.timedelta(days=n) for n in (3, 2, 1))
    made = {}
    made["a"] = paid(place(("TEE", 2), coupon="SAVE10"), at(d3, 9))
    made["b"] = paid(place(("MUG", 3), ("STICK", 4)), at(d3, 23, 30), method="mpesa")
    orders.cancel_order(place(("MUG", 1)))  # never paid: no sale
    made["d"] = paid(place(("TEE", 1), ("MUG", 2), coupon="save10"), at(d2, 10))
    made["e"] = paid(place(("STICK", 2)), at(d2, 11))
    orders.cancel_order(made["e"])  # paid, then cancelled: the sale stands...
    refund(made["e"], at(d2, 15))  # ...until the money goes back the same day
    line = made["d"].lines.get(sku="MUG")
    refund(made["d"], at(d1, 8), lines={line.pk: 1}, reason="chipped")
    refund(made["a"], at(d1, 9), amount=Decimal("25.00"))
    with override_settings(STORE_CURRENCY="EUR"):
        made["eur"] = paid(place(("MUG", 1)), at(d1, 14))
    made["today"] = paid(place(("TEE", 1)), timezone.now() - dt.timedelta(seconds=1))
    return {"days": (d3, d2, d1, today), **made}


# --- The rollup -----------------------------------------------------------------------------


def test_the_rollup_equals_the_orders_day_by_day(history):
    d3, d2, d1, today = history["days"]
    assert rollup.days_to_refresh() == [d3, d2, d1], "first run: every day since the first sale"
    rollup.refresh_rollup()
    for day in (d3, d2, d1):
        assert_day_matches(day)
    assert not DailySales.objects.filter(day=today).exists(), "today is never stored"
    # Spot checks on the definition.
    tee, mug = history["a"].lines.get(), history["d"].lines.get(sku="MUG")
    row = DailySales.objects.get(day=d2, currency="USD")
    assert row.orders == 2 and row.refund_count == 1, "the cancelled unpaid order is no sale"
    assert row.refunds == history["e"].total
    d1_row = DailySales.objects.get(day=d1, currency="USD")
    assert d1_row.orders == 0 and d1_row.refund_count == 2
    assert d1_row.refunds == Decimal("25.00") + mug.total / mug.quantity
    assert d1_row.net == -d1_row.refunds, "a day of refunds only is negative"
    assert d1_row.refunded_items == 1
    mug_row = DailyBreakdown.objects.get(day=d1, currency="USD", dimension=Dimension.PRODUCT,
                                         key=str(mug.product_id_snapshot))
    assert (mug_row.refunds, mug_row.refunded_items, mug_row.orders) == (
        mug.total / mug.quantity, 1, 0)
    coupon = DailyBreakdown.objects.get(day=d3, dimension=Dimension.COUPON, key="SAVE10")
    assert coupon.discounts == history["a"].discount_total > 0
    assert tee.discount_amount == history["a"].discount_total
    # The other currency is kept apart, never added to the store currency's figures.
    eur = DailySales.objects.get(day=d1, currency="EUR")
    assert eur.orders == 1 and eur.gross == history["eur"].subtotal


def test_categories_follow_the_products(history):
    d3 = history["days"][0]
    rollup.refresh_rollup()
    parts = {p.label: p for p in DailyBreakdown.objects.filter(
        day=d3, dimension=Dimension.CATEGORY)}
    assert set(parts) == {"Clothing", "Kitchen", ""}
    assert parts[""].items == 4, "the sticker has no category"
    assert parts["Kitchen"].orders == 1 and parts["Kitchen"].items == 3
    assert sum(p.gross - p.discounts for p in parts.values()) == sum(
        line.total for line in OrderLine.objects.filter(order__in=[history["a"], history["b"]]))


def test_rebuilding_a_day_is_idempotent(history):
    d3, d2, d1, _today = history["days"]

    def snapshot():
        return (sorted(DailySales.objects.values_list(
                    "day", "currency", "orders", "items", "gross", "discounts", "shipping",
                    "refunds", "refund_count", "net")),
                sorted(DailyBreakdown.objects.values_list(
                    "day", "currency", "dimension", "key", "label", "orders", "items", "gross",
                    "discounts", "shipping", "refunds", "refunded_items", "net")))

    rollup.rebuild_days([d3, d2, d1])
    first = snapshot()
    assert rollup.rebuild_days([d3, d2, d1]) == 3
    assert rollup.rebuild_days([d2]) == 1
    assert snapshot() == first
    # An hour later, with no order changed since: nothing to do.
    Order.objects.update(updated_at=timezone.now() - dt.timedelta(hours=1))
    assert rollup.days_to_refresh() == [], "nothing new, nothing to do"
    rollup.refresh_rollup()
    assert snapshot() == first


def test_days_touched_since_the_last_run_are_recomputed(history):
    d3, d2, d1, _today = history["days"]
    rollup.refresh_rollup()
    # The last run was two hours ago; the orders were last changed before it.
    DailySales.objects.update(computed_at=timezone.now() - dt.timedelta(hours=2))
    Order.objects.update(updated_at=timezone.now() - dt.timedelta(hours=3))
    # A pending refund of a d3 order settled later (recorded on d2, the day it was asked).
    pending = orders.record_refund(history["b"], orders.RefundRequest(amount=Decimal("10")),
                                   status=Refund.Status.PENDING)
    Refund.objects.filter(pk=pending.pk).update(created_at=at(d2, 20))
    orders.settle_refund(pending, succeeded=True)
    assert rollup.days_to_refresh() == [d3, d2], "the order's paid day and its refunds' days"
    rollup.refresh_rollup()
    for day in (d3, d2, d1):
        assert_day_matches(day)
    assert DailySales.objects.get(day=d2, currency="USD").refund_count == 2


def test_a_missed_run_is_caught_up_and_days_without_sales_get_zeros(history):
    d3, d2, d1, _today = history["days"]
    rollup.rebuild_days([d3])
    Order.objects.update(updated_at=timezone.now() - dt.timedelta(hours=1))
    assert rollup.days_to_refresh() == [d2, d1], "the days after the last one counted"
    rollup.rebuild_days([d3 - dt.timedelta(days=5)])
    row = DailySales.objects.get(day=d3 - dt.timedelta(days=5))
    assert (row.orders, row.net, row.currency) == (0, Decimal("0"), "USD")


def test_days_are_the_store_time_zone_s(shelf):
    with override_settings(TIME_ZONE="Africa/Nairobi"):  # UTC+3
        today = timezone.localdate()
        d2 = today - dt.timedelta(days=2)
        # 22:30 UTC on d2 is 01:30 on the next day in Nairobi.
        late = dt.datetime.combine(d2, dt.time(22, 30), tzinfo=dt.UTC)
        order = paid(place(("MUG", 1)), late)
        rollup.rebuild_days([d2, d2 + dt.timedelta(days=1)])
        assert DailySales.objects.get(day=d2).orders == 0
        assert DailySales.objects.get(day=d2 + dt.timedelta(days=1)).orders == 1
        assert rollup.local_day(order.paid_at) == d2 + dt.timedelta(days=1)


def test_today_is_live_and_past_days_come_from_the_rollup(history):
    d3, d2, d1, today = history["days"]
    rollup.refresh_rollup()
    series = daily_series(d3, today)
    assert series.counted_through == d1 and series.live_from == today
    want = expected(today, today)
    assert series.days[today].orders == want["orders"] == 1
    assert series.days[today].net == want["net"] == history["today"].total
    # A sale a moment ago shows at once, without the job.
    late = paid(place(("STICK", 1)), timezone.now())
    assert daily_series(today, today).days[today].net == history["today"].total + late.total
    # The rollup is the same as a live computation of those days.
    live = rollup.compute(d3, d1)
    for day in (d3, d2, d1):
        assert series.days[day].net == live[day, "USD"].totals.net
    assert series.other_currency_orders == 1


def test_a_rollup_that_is_behind_is_topped_up_live(history):
    d3, d2, d1, today = history["days"]
    rollup.rebuild_days([d3])
    series = daily_series(d3, today)
    assert series.counted_through == d3 and series.live_from == d2
    for day in (d2, d1, today):
        assert series.days[day].net == expected(day, day)["net"], day
    products = breakdown(Dimension.PRODUCT, d3, today, limit=1)
    full = breakdown(Dimension.PRODUCT, d3, today)
    assert products.count == full.count == 3
    assert products.rows[0] == full.rows[0], "the best product, merged exactly"
    assert products.total.net == full.total.net


# --- Whole months ---------------------------------------------------------------------------

FIGURES = ("orders", "items", "gross", "discounts", "shipping", "refunds", "refunded_items", "net")


def month_before(month: dt.date) -> dt.date:
    return (month - dt.timedelta(days=1)).replace(day=1)


@pytest.fixture
def months(shelf):
    """Sales over the last three months and this one: the range asked for starts in the middle
    of the first month (a sale before it, one after, a refund of the earlier one inside it),
    spans two whole months (coupons, two providers, a refund of lines, a sale in another
    currency) and ends today, with days of this month counted and today's live."""
    today = timezone.localdate()
    this_month = today.replace(day=1)
    last_month = month_before(this_month)
    middle = month_before(last_month)
    oldest = month_before(middle)
    first = oldest + dt.timedelta(days=14)
    made = {}
    made["before"] = paid(place(("TEE", 1), ("MUG", 1)), at(oldest + dt.timedelta(days=5)))
    made["edge"] = paid(place(("MUG", 2), coupon="SAVE10"), at(oldest + dt.timedelta(days=20)),
                        method="mpesa")
    refund(made["before"], at(oldest + dt.timedelta(days=21)), amount=Decimal("40.00"))
    made["middle"] = paid(place(("TEE", 2), ("STICK", 3)), at(middle + dt.timedelta(days=2)))
    made["middle2"] = paid(place(("TEE", 1), coupon="SAVE10"), at(middle + dt.timedelta(days=9)),
                           method="mpesa")
    made["last"] = paid(place(("MUG", 1), ("STICK", 1)), at(last_month + dt.timedelta(days=3)))
    line = made["middle"].lines.get(sku="TEE")
    refund(made["middle"], at(last_month + dt.timedelta(days=4)), lines={line.pk: 1})
    with override_settings(STORE_CURRENCY="EUR"):
        made["eur"] = paid(place(("MUG", 1)), at(middle + dt.timedelta(days=4)))
    made["this"] = paid(place(("STICK", 2)), at(this_month, 0, 30) if this_month < today
                        else timezone.now() - dt.timedelta(seconds=2))
    made["just_now"] = paid(place(("TEE", 1)), timezone.now() - dt.timedelta(seconds=1))
    return {"first": first, "today": today, "months": (oldest, middle, last_month, this_month),
            **made}


def live_breakdown(dimension: str, first: dt.date, last: dt.date) -> dict[str, rollup.Figures]:
    """``dimension``'s figures over [first, last], straight from the orders."""
    merged: dict[str, rollup.Figures] = {}
    for (_day, currency), figures in rollup.compute(first, last, until=timezone.now()).items():
        if currency == "USD":
            for key, item in figures.breakdowns[dimension].items():
                merged.setdefault(key, rollup.Figures()).add(item)
    return merged


def figures_of(figures: rollup.Figures) -> tuple:
    return tuple(getattr(figures, name) for name in FIGURES)


def assert_breakdowns_are_live(first: dt.date, last: dt.date, *, sold: bool = True) -> None:
    for dimension in Dimension.values:
        want = live_breakdown(dimension, first, last)
        assert bool(want) or not sold, dimension
        found = breakdown(dimension, first, last)
        assert {key: figures_of(f) for key, f in found.rows} == {
            key: figures_of(f) for key, f in want.items()}, dimension
        total = rollup.Figures()
        for figures in want.values():
            total.add(figures)
        best = sorted(want.items(), key=lambda pair: (-pair[1].net, -pair[1].items, pair[0]))
        limited = breakdown(dimension, first, last, limit=1)
        assert limited.count == found.count == len(want), dimension
        assert figures_of(limited.total) == figures_of(found.total) == figures_of(total)
        assert [(key, figures_of(f)) for key, f in limited.rows] == [
            (key, figures_of(f)) for key, f in best[:1]], dimension


def assert_months_add_up() -> None:
    """Each stored month is its days' rows added up; every complete month with days is stored,
    and no month under way is."""
    through = DailySales.objects.aggregate(last=Max("day"))["last"]
    days: dict[tuple, list] = {}
    for row in DailyBreakdown.objects.values("day", "currency", "dimension", "key", "label",
                                             *FIGURES):
        key = (row["day"].replace(day=1), row["currency"], row["dimension"], row["key"])
        summed = days.setdefault(key, [""] + [0] * len(FIGURES))
        summed[0] = max(summed[0], row["label"])
        for index, name in enumerate(FIGURES, start=1):
            summed[index] += row[name]
    complete = {key: tuple(summed) for key, summed in days.items()
                if rollup.month_end(key[0]) <= through}
    stored = {(row[0], row[1], row[2], row[3]): tuple(row[4:])
              for row in MonthlyBreakdown.objects.values_list(
                  "month", "currency", "dimension", "key", "label", *FIGURES)}
    assert stored == complete
    totals: dict[tuple, list] = {}
    for (month, currency, dimension, _key), (_label, *numbers) in complete.items():
        summed = totals.setdefault((month, currency, dimension), [0] * len(FIGURES))
        for index, number in enumerate(numbers):
            summed[index] += number
    assert {(row[0], row[1], row[2]): list(row[3:])
            for row in MonthlyBreakdownTotal.objects.values_list(
                "month", "currency", "dimension", *FIGURES)} == totals


def test_whole_months_of_a_range():
    whole = whole_months
    assert whole(dt.date(2026, 1, 15), dt.date(2026, 4, 3)) == (dt.date(2026, 2, 1),
                                                                dt.date(2026, 3, 1))
    assert whole(dt.date(2026, 2, 1), dt.date(2026, 2, 28)) == (dt.date(2026, 2, 1),
                                                                dt.date(2026, 2, 1))
    assert whole(dt.date(2025, 12, 1), dt.date(2026, 1, 31)) == (dt.date(2025, 12, 1),
                                                                 dt.date(2026, 1, 1))
    assert whole(dt.date(2024, 2, 2), dt.date(2024, 2, 29)) is None
    assert whole(dt.date(2026, 1, 2), dt.date(2026, 2, 27)) is None
    assert rollup.month_end(dt.date(2024, 2, 10)) == dt.date(2024, 2, 29)
    assert rollup.month_end(dt.date(2025, 12, 31)) == dt.date(2025, 12, 31)


def test_a_range_of_part_months_whole_months_and_today_equals_the_live_figures(months):
    oldest, middle, last_month, this_month = months["months"]
    first, today = months["first"], months["today"]
    rollup.refresh_rollup()
    assert set(MonthlyBreakdown.objects.values_list("month", flat=True)) == {
        oldest, middle, last_month}, "complete months only: this one is under way"
    assert whole_months(first, today - dt.timedelta(days=1)) == (middle, last_month)
    assert_months_add_up()
    assert_breakdowns_are_live(first, today)
    assert_breakdowns_are_live(oldest, last_month)  # whole months only
    assert_breakdowns_are_live(first + dt.timedelta(days=7), middle + dt.timedelta(days=5),
                               sold=False)
    eur = MonthlyBreakdown.objects.get(month=middle, currency="EUR",
                                       dimension=Dimension.PROVIDER)
    assert eur.orders == 1 and eur.gross == months["eur"].subtotal, "kept apart"
    # The report pages read the same figures.
    products = breakdown(Dimension.PRODUCT, first, today)
    sold = OrderLine.objects.filter(order__paid_at__gte=start_of_day(first),
                                    order__currency="USD")
    assert products.total.gross - products.total.discounts == sum(
        line.total for line in sold)


def test_recomputing_a_day_updates_its_month(months):
    oldest, middle, last_month, this_month = months["months"]
    first, today = months["first"], months["today"]
    rollup.refresh_rollup()
    before = {row.key: row.net for row in MonthlyBreakdown.objects.filter(
        month=middle, currency="USD", dimension=Dimension.PRODUCT)}
    # An hour later, a refund of a sale of the middle month recorded on one of its days (a
    # refund the provider settled late, say): the job recomputes the order's days.
    DailySales.objects.update(computed_at=timezone.now() - dt.timedelta(hours=2))
    Order.objects.update(updated_at=timezone.now() - dt.timedelta(hours=3))
    line = months["middle"].lines.get(sku="STICK")
    refund(months["middle"], at(middle + dt.timedelta(days=12)), lines={line.pk: 3})
    assert rollup.days_to_refresh() == [middle + dt.timedelta(days=2),
                                        middle + dt.timedelta(days=12),
                                        last_month + dt.timedelta(days=4)]
    rollup.refresh_rollup()
    assert_months_add_up()
    after = {row.key: row.net for row in MonthlyBreakdown.objects.filter(
        month=middle, currency="USD", dimension=Dimension.PRODUCT)}
    sticker = str(line.product_id_snapshot)
    assert after[sticker] == before[sticker] - line.total, "the refund is in the month"
    assert_breakdowns_are_live(first, today)
    # Idempotent: recomputing the month's days again changes nothing.
    snapshot = (sorted(MonthlyBreakdown.objects.values_list(
                    "month", "currency", "dimension", "key", "label", *FIGURES)),
                sorted(MonthlyBreakdownTotal.objects.values_list(
                    "month", "currency", "dimension", *FIGURES)))
    rollup.rebuild_days([middle + dt.timedelta(days=n) for n in range(28)])
    assert (sorted(MonthlyBreakdown.objects.values_list(
                "month", "currency", "dimension", "key", "label", *FIGURES)),
            sorted(MonthlyBreakdownTotal.objects.values_list(
                "month", "currency", "dimension", *FIGURES))) == snapshot
    assert_months_add_up()


def test_a_month_is_stored_once_its_last_day_is_counted(months):
    oldest, middle, last_month, this_month = months["months"]
    end = rollup.month_end(middle)
    rollup.rebuild_days([middle + dt.timedelta(days=n) for n in range(10)])
    assert not MonthlyBreakdown.objects.exists(), "under way: its days are read one by one"
    assert breakdown(Dimension.PRODUCT, middle, end).total.net == sum(
        f.net for f in live_breakdown(Dimension.PRODUCT, middle, end).values())
    rollup.rebuild_days([end - dt.timedelta(days=1), end])
    assert set(MonthlyBreakdown.objects.values_list("month", flat=True)) == {middle}
    assert_months_add_up()
    # Counting on past a month's end without its last days (by hand, days skipped) still
    # stores it: the rollup reads it as complete from then on.
    MonthlyBreakdownTotal.objects.all().delete()
    MonthlyBreakdown.objects.all().delete()
    DailySales.objects.filter(day__gt=middle + dt.timedelta(days=9)).delete()
    DailyBreakdown.objects.filter(day__gt=middle + dt.timedelta(days=9)).delete()
    rollup.rebuild_days([last_month + dt.timedelta(days=3)])
    assert set(MonthlyBreakdown.objects.values_list("month", flat=True)) == {middle}
    assert_months_add_up()


def test_a_limited_breakdown_breaks_ties_as_the_whole_one(shelf):
    """Equal net sales: more units first, in the database's cut as in the page's order."""
    day = timezone.localdate() - dt.timedelta(days=2)
    paid(place(("MUG", 1)), at(day, 9))
    paid(place(("STICK", 6)), at(day, 10))  # the same 300.00, in six units
    rollup.rebuild_days([day])
    whole = breakdown(Dimension.PRODUCT, day, day)
    assert [f.items for _key, f in whole.rows] == [6, 1]
    assert whole.rows[0][1].net == whole.rows[1][1].net
    assert breakdown(Dimension.PRODUCT, day, day, limit=1).rows == whole.rows[:1]


def test_a_key_sold_today_keeps_its_stored_figures_in_a_limited_breakdown(shelf):
    """Mugs refunded in the range (sold before it) and sold again today: 1,200.00 today but
    300.00 over the range, below the tee's 800.00. Not on top with today's figures alone."""
    today = timezone.localdate()
    mugs = paid(place(("MUG", 3)), at(today - dt.timedelta(days=5)))
    refund(mugs, at(today - dt.timedelta(days=3)), lines={mugs.lines.get().pk: 3})
    tee = paid(place(("TEE", 1)), at(today - dt.timedelta(days=3), 13))
    rollup.rebuild_days([today - dt.timedelta(days=n) for n in range(1, 6)])
    paid(place(("MUG", 4)), timezone.now() - dt.timedelta(seconds=1))
    first = today - dt.timedelta(days=3)
    whole = breakdown(Dimension.PRODUCT, first, today)
    top = breakdown(Dimension.PRODUCT, first, today, limit=1)
    assert [(key, f.net) for key, f in whole.rows] == [
        (str(tee.lines.get().product_id_snapshot), Decimal("800.00")),
        (str(mugs.lines.get().product_id_snapshot), Decimal("300.00"))]
    assert top.rows == whole.rows[:1]
    assert (top.count, figures_of(top.total)) == (whole.count, figures_of(whole.total)) == (
        2, figures_of(whole.total))


def test_monthly_rows_are_filled_for_counted_months_on_upgrade(months):
    """The migration that adds the monthly rollup fills it from the daily rows already kept."""
    import importlib
    from types import SimpleNamespace

    from django.apps import apps as global_apps
    from django.db import connection

    migration = importlib.import_module("backoffice.reports.migrations.0004_monthlybreakdown")
    rollup.refresh_rollup()

    def kept():
        return (sorted(MonthlyBreakdown.objects.values_list(
                    "month", "currency", "dimension", "key", "label", *FIGURES)),
                sorted(MonthlyBreakdownTotal.objects.values_list(
                    "month", "currency", "dimension", *FIGURES)))

    before = kept()
    assert before[0] and before[1]
    MonthlyBreakdownTotal.objects.all().delete()
    MonthlyBreakdown.objects.all().delete()
    # It needs only the editor's connection (SQLite refuses a schema editor inside a test's
    # transaction).
    migration.fill_complete_months(global_apps, SimpleNamespace(connection=connection))
    assert kept() == before


def test_the_rollup_job_is_scheduled():
    job = next(job for job in SCHEDULED_JOBS if job.name == "Sales rollup")
    assert job.func == "backoffice.reports.rollup.refresh_rollup" and job.cron


# --- The dashboard ----------------------------------------------------------------------------


def test_the_dashboard_shows_sales_and_what_needs_doing(history, staff_client,
                                                        django_assert_max_num_queries):
    d3, d2, d1, today = history["days"]
    # An unpaid order whose payment failed, and a parcel on the road for ten days.
    failed = place(("MUG", 1), key="failed")
    Payment.objects.create(order=failed, provider="mpesa", amount=failed.total,
                           currency="USD", status="failed", idempotency_key="p-failed")
    shipped = paid(place(("TEE", 1), key="late"), at(d1))
    orders.create_shipment(shipped, orders.ShipmentRequest(carrier="G4S"))
    Shipment.objects.filter(order=shipped).update(shipped_at=timezone.now()
                                                  - dt.timedelta(days=10))
    rollup.refresh_rollup()
    with django_assert_max_num_queries(12):
        response = staff_client.get("/admin/")
    assert response.status_code == 200
    html = response.content.decode()
    sales = response.context["store_dashboard"]["sales"]
    today_card, week, month = sales["cards"]
    want_today = expected(today, today)
    assert today_card["value"] == format_money(want_today["net"])
    assert f'href="/admin/orders/order/?paid_at_from={today}&amp;paid_at_to={today}"' in html
    week_want = expected(today - dt.timedelta(days=7), d1)
    assert week["value"] == format_money(week_want["net"])
    assert week["orders"] == week_want["orders"]
    assert (f"paid_at_from={today - dt.timedelta(days=7)}&amp;paid_at_to={d1}") in html
    attention = {w["title"]: w for w in response.context["store_dashboard"]["attention"]}
    assert attention["Payment failed"]["value"] == 1
    assert attention["Deliveries to look at"]["value"] == 1
    assert attention["Awaiting payment"]["value"] == 1
    assert "?status=payment_failed" in html and "?status=delivery_late" in html
    assert "?status=to_fulfil" in html and "?status=refund_due" in html
    # Top products and providers, each linking to its orders.
    top = sales["products"]["rows"]
    assert "Tee" in str(top[0][0]) and f"product={history['a'].lines.get().product_id_snapshot}" \
        in str(top[0][0])
    assert any("payment_method=mpesa" in str(row[0]) for row in sales["providers"]["rows"])
    assert "low_stock" in response.context["store_dashboard"]
    assert 'class="chart"' in html and "data-type=\"bar\"" in html
    # The chart's last point is today's net (a float only at the chart's edge).
    assert '"data": [' in sales["chart"]


def test_the_dashboard_links_filter_the_orders_list(history, staff_client):
    d3, d2, d1, today = history["days"]
    listed = staff_client.get(f"/admin/orders/order/?paid_at_from={d3}&paid_at_to={d3}")
    assert {o.pk for o in listed.context["cl"].result_list} == {history["a"].pk,
                                                                history["b"].pk}
    tee = history["a"].lines.get().product_id_snapshot
    by_product = staff_client.get(f"/admin/orders/order/?product={tee}")
    assert {o.pk for o in by_product.context["cl"].result_list} == {
        history["a"].pk, history["d"].pk, history["today"].pk}
    by_coupon = staff_client.get("/admin/orders/order/?coupon=save10")
    assert len(by_coupon.context["cl"].result_list) == 2
    no_category = staff_client.get("/admin/orders/order/?category=none")
    assert {o.pk for o in no_category.context["cl"].result_list} == {history["b"].pk,
                                                                     history["e"].pk}
    refunded = staff_client.get(f"/admin/orders/order/?refunded={d1}:{d1}")
    assert {o.pk for o in refunded.context["cl"].result_list} == {history["a"].pk,
                                                                  history["d"].pk}
    mpesa = staff_client.get(f"/admin/orders/order/?payment_method=mpesa&paid_at_from={d3}")
    assert [o.pk for o in mpesa.context["cl"].result_list] == [history["b"].pk]


def test_the_dashboard_shows_sales_only_to_those_allowed(history, client, django_user_model):
    clerk = django_user_model.objects.create_user("clerk", password="pw-123-long", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_order"))
    client.force_login(clerk)
    response = client.get("/admin/")
    assert response.context["store_dashboard"]["sales"] is None
    assert response.context["store_dashboard"]["attention"] is not None
    assert "Sales today" not in response.content.decode()
    clerk.user_permissions.add(Permission.objects.get(codename="view_reports"))
    clerk = django_user_model.objects.get(pk=clerk.pk)
    client.force_login(clerk)
    assert "Sales today" in client.get("/admin/").content.decode()


def test_the_dashboard_on_an_empty_store(staff_client, django_assert_max_num_queries):
    with django_assert_max_num_queries(12):
        response = staff_client.get("/admin/")
    assert response.status_code == 200
    assert "USD 0.00" in response.content.decode()


def test_dashboard_sales_compares_today_with_yesterday_by_this_time(shelf):
    today = timezone.localdate()
    now = timezone.now()
    yesterday = today - dt.timedelta(days=1)
    early = paid(place(("MUG", 1), key="e"), max(now - dt.timedelta(days=1, minutes=5),
                                                 start_of_day(yesterday)))
    paid(place(("TEE", 1), key="l"), min(now - dt.timedelta(days=1) + dt.timedelta(minutes=5),
                                         start_of_day(today) - dt.timedelta(seconds=1)))
    sales = dashboard_sales(now)
    if (now - dt.timedelta(days=1, minutes=5)) >= start_of_day(yesterday):
        assert sales.yesterday_same_time.net == early.total
    assert sales.periods[7][0].orders == 2


# --- The reports --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_each_report_renders_with_bounded_queries(history, staff_client, kind,
                                                  django_assert_max_num_queries):
    rollup.refresh_rollup()
    url = REPORTS if kind == "sales" else f"{REPORTS}{kind}/"
    with django_assert_max_num_queries(12):
        response = staff_client.get(url)
    assert response.status_code == 200
    report = response.context["report"]
    d3, _d2, _d1, today = history["days"]
    assert (report.first, report.last) == (today - dt.timedelta(days=29), today)
    want = expected(report.first, report.last)
    if kind in ("sales", "refunds", "providers"):
        assert report.totals.net == want["net"]
        assert report.totals.refunds == want["refunds"]
    if kind == "sales":
        assert report.totals.orders == want["orders"] == 5
    if kind in ("products", "categories"):
        goods = sum((line.total for line in OrderLine.objects.filter(
            order__paid_at__isnull=False, order__currency="USD")), Decimal("0"))
        assert report.totals.gross - report.totals.discounts == goods
    html = response.content.decode()
    assert "Export" in html and "format=csv" in html and "format=xlsx" in html


@pytest.mark.parametrize("kind", KINDS)
def test_each_report_exports_csv_and_xlsx_with_the_page_s_totals(history, staff_client, kind):
    from openpyxl import load_workbook

    rollup.refresh_rollup()
    base = REPORTS if kind == "sales" else f"{REPORTS}{kind}/"
    page = staff_client.get(base).context["report"]
    money = "refunded (USD)" if kind == "refunds" else "net sales (USD)"
    want = page.totals.refunds if kind == "refunds" else page.totals.net

    response = staff_client.get(f"{base}?format=csv")
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert sum(Decimal(row[money]) for row in rows) == want
    assert len(rows) == page.count

    response = staff_client.get(f"{base}?format=xlsx")
    sheet = load_workbook(io.BytesIO(response.content)).active
    values = list(sheet.values)
    header, data = values[0], values[1:]
    column = header.index(money)
    assert sum(Decimal(str(row[column])) for row in data) == want
    assert all(isinstance(row[column], int | float) for row in data), "numbers stay numbers"


def test_the_sales_report_groups_by_week_and_month(history, staff_client):
    rollup.refresh_rollup()
    d3, _d2, _d1, today = history["days"]
    first = today - dt.timedelta(days=60)
    for group in ("week", "month"):
        response = staff_client.get(f"{REPORTS}?from={first}&to={today}&group={group}")
        report = response.context["report"]
        assert report.group == group
        assert report.totals.net == expected(first, today)["net"]
        assert report.rows[0].values["from"] == first
        assert report.rows[-1].values["to"] == today
        if group == "week":
            assert all(row.values["from"].weekday() == 0 for row in report.rows[1:])


def test_report_ranges_are_checked(staff_client):
    response = staff_client.get(f"{REPORTS}?from=yesterday&to=2020-02-30")
    assert response.status_code == 200
    assert len(response.context["errors"]) == 2
    far = staff_client.get(f"{REPORTS}?from=2001-01-01")
    assert (far.context["report"].last - far.context["report"].first).days + 1 == 3 * 366
    assert staff_client.get(f"{REPORTS}nope/").status_code == 404
    assert staff_client.get(f"{REPORTS}?format=pdf").status_code == 404


def test_report_pages_need_the_reports_permission(client, django_user_model):
    clerk = django_user_model.objects.create_user("clerk", password="pw-123-long", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_order"))
    client.force_login(clerk)
    for kind in KINDS:
        url = REPORTS if kind == "sales" else f"{REPORTS}{kind}/"
        assert client.get(url).status_code == 403, kind
        assert client.get(f"{url}?format=csv").status_code == 403, kind
    assert "Reports" not in client.get("/admin/").content.decode()
    clerk.user_permissions.add(Permission.objects.get(content_type__app_label="reports",
                                                      codename="view_reports"))
    client.force_login(django_user_model.objects.get(pk=clerk.pk))
    assert client.get(f"{REPORTS}products/").status_code == 200
    assert f'href="{REPORTS}"' in client.get("/admin/").content.decode(), "in the sidebar"


def test_anonymous_visitors_go_to_the_login_page(client):
    response = client.get(REPORTS)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
