"""Existing orders move from the one ``status`` (pending_payment, paid, processing, shipped,
delivered, cancelled, partially_refunded, refunded) to their payment and fulfilment states and
the derived overall status. Nothing is read from ``status`` that the rows cannot confirm:

- **payment** from the money: unpaid when neither ``paid_at`` nor a payment that took money
  says otherwise; overpaid when a payment after the first still holds money; else paid,
  partially refunded or refunded by ``refunded_total`` against ``total``. ``paid_at`` is filled
  from the first payment that took money when it was missing.
- **fulfilment** from the shipments and lines: units still owed (ordered, not shipped, not
  refunded), shipments made and delivered; an order the old machine called delivered stays
  delivered.
- **cancellation** from the old status; ``cancelled_at`` is the time of the move to cancelled in
  the timeline (else the order's last change).
- ``pay_on_delivery``: orders with no payment window (checkout leaves it empty for cash on
  delivery).
- the **overall status** by the same rule as ``backoffice.orders.status.overall_status``
  (copied here, so that this migration keeps its meaning if the rule changes later).

Backwards, the old status is rebuilt from the new states (processing for goods part-shipped);
the new columns then go with the schema migration before this one.
"""

from django.db import migrations
from django.db.models import Count, F, Max, Q, Sum, Value
from django.db.models.functions import Greatest

BATCH = 1000
SETTLED = ("succeeded", "partially_refunded", "refunded")
MONEY_HELD = ("paid", "partially_refunded", "overpaid")


def _fulfilment(shipments, delivered, left):
    if shipments == 0:
        return "unfulfilled"
    if delivered == shipments and left == 0:
        return "delivered"
    if delivered:
        return "partially_delivered"
    return "shipped" if left == 0 else "partially_shipped"


def _overall(payment, fulfilment, cancelled, left):
    if cancelled:
        return "cancelled"
    if payment == "refunded":
        return "completed"
    goods_done = fulfilment == "delivered" or (fulfilment == "unfulfilled" and left == 0)
    if goods_done and payment in ("paid", "partially_refunded"):
        return "completed"
    return "open"


def _payment(order, taken):
    if order.paid_at is None and not taken:
        return "unpaid"
    if any(amount > refunded for _, amount, refunded in taken[1:]):
        return "overpaid"
    if order.refunded_total <= 0:
        return "paid"
    return "refunded" if order.refunded_total >= order.total else "partially_refunded"


def forwards(apps, schema_editor):
    Order = apps.get_model("orders", "Order")
    OrderLine = apps.get_model("orders", "OrderLine")
    OrderEvent = apps.get_model("orders", "OrderEvent")
    Shipment = apps.get_model("orders", "Shipment")
    Payment = apps.get_model("payments", "Payment")
    fields = ["payment_status", "fulfilment_status", "status", "pay_on_delivery",
              "cancelled_at", "paid_at"]
    last_pk = 0
    while True:
        orders = list(Order.objects.filter(pk__gt=last_pk).order_by("pk")[:BATCH])
        if not orders:
            break
        last_pk = orders[-1].pk
        ids = [o.pk for o in orders]
        left = dict(
            OrderLine.objects.filter(order_id__in=ids).values("order_id")
            .annotate(n=Sum(Greatest(F("quantity") - F("quantity_shipped")
                                     - F("quantity_refunded"), Value(0))))
            .values_list("order_id", "n"))
        shipped = {
            row["order_id"]: row
            for row in Shipment.objects.filter(order_id__in=ids).values("order_id").annotate(
                made=Count("pk"), arrived=Count("pk", filter=Q(delivered_at__isnull=False)))
        }
        taken = {}
        for payment in (Payment.objects.filter(order_id__in=ids, status__in=SETTLED)
                        .order_by("succeeded_at", "id")
                        .values_list("order_id", "succeeded_at", "amount", "amount_refunded")):
            taken.setdefault(payment[0], []).append(payment[1:])
        cancelled_at = dict(
            OrderEvent.objects.filter(order_id__in=ids, kind="status", to_status="cancelled")
            .values("order_id").annotate(at=Max("created_at")).values_list("order_id", "at"))
        for order in orders:
            owed = left.get(order.pk) or 0
            made = shipped.get(order.pk, {"made": 0, "arrived": 0})
            payments = taken.get(order.pk, [])
            payment = _payment(order, payments)
            if payment != "unpaid" and order.paid_at is None:
                order.paid_at = payments[0][0] if payments else order.updated_at
            fulfilment = ("delivered" if order.status == "delivered"
                          else _fulfilment(made["made"], made["arrived"], owed))
            cancelled = order.status == "cancelled"
            order.cancelled_at = (cancelled_at.get(order.pk) or order.updated_at) if cancelled \
                else None
            # Accepted unpaid: no payment window (cash on delivery), or moved on to processing
            # or beyond without being paid (the old machine let any order do so). Either way it
            # may ship unpaid and must never be cancelled by the expiry job.
            order.pay_on_delivery = order.payment_due_at is None or (
                payment == "unpaid" and order.status in {"processing", "shipped", "delivered"})
            order.payment_status = payment
            order.fulfilment_status = fulfilment
            order.status = _overall(payment, fulfilment, cancelled, owed)
        Order.objects.bulk_update(orders, fields)


def backwards(apps, schema_editor):
    Order = apps.get_model("orders", "Order")
    last_pk = 0
    while True:
        orders = list(Order.objects.filter(pk__gt=last_pk).order_by("pk")[:BATCH])
        if not orders:
            break
        last_pk = orders[-1].pk
        for order in orders:
            if order.status == "cancelled":
                order.status = "cancelled"
            elif order.payment_status in ("refunded", "partially_refunded"):
                order.status = order.payment_status
            elif order.fulfilment_status in ("delivered", "shipped"):
                order.status = order.fulfilment_status
            elif order.fulfilment_status in ("partially_shipped", "partially_delivered"):
                order.status = "processing"
            elif order.payment_status in MONEY_HELD:
                order.status = "paid"
            else:
                order.status = "pending_payment"
        Order.objects.bulk_update(orders, ["status"])


class Migration(migrations.Migration):

    dependencies = [
        ("orders", "0004_order_payment_and_fulfilment"),
        ("payments", "0001_initial"),
    ]

    operations = [migrations.RunPython(forwards, backwards, elidable=False)]
