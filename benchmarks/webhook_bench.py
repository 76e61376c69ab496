"""Webhook benchmark: how fast payment webhooks are taken in and acted on, in-process.

    .venv/bin/python benchmarks/webhook_bench.py                    # SQLite in a temporary folder
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python \
        benchmarks/webhook_bench.py --payments 500                  # a fresh PostgreSQL database

It makes ``--payments`` orders with an open Stripe payment each (Stripe's API answered by
``responses``, as in the tests), then:

1. **intake**: posts one signed ``checkout.session.completed`` per payment to
   ``/api/v1/payments/webhooks/stripe/`` through Django's test client (verify, store, enqueue on
   the ORM broker; the job is not run), then every one of them again (replays);
2. **processing**: runs the job (``services.process_event``) for every stored event.

It prints requests per second, the median and p99 time of one, and queries per request, and
checks that every order is paid once. It runs in this process (no web server), so the numbers
are the application's own cost, not the network's. It prints numbers; it is not a test.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SECRET = "whsec_bench"  # noqa: S105 - a test-mode signing secret for this run only


def _setup_django(database_url: str) -> str | None:
    """Point Django at a fresh database; returns the PostgreSQL database to drop, if any."""
    os.environ.setdefault("DEBUG", "1")
    os.environ["DATA_DIR"] = tempfile.mkdtemp(prefix="webhook-bench-")
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["PUBLIC_URL"] = "https://shop.example.com"
    dropped = None
    if database_url.startswith("postgres"):
        import psycopg

        dropped = f"bench_webhooks_{os.getpid()}"
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{dropped}"')
        os.environ["DATABASE_URL"] = database_url.rsplit("/", 1)[0] + f"/{dropped}"
    else:
        os.environ.pop("DATABASE_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "backoffice.settings"
    import django

    django.setup()
    return dropped


def _signed(event_id: str, session_id: str, amount: int) -> tuple[str, str]:
    payload = json.dumps({
        "id": event_id, "object": "event", "type": "checkout.session.completed",
        "api_version": "2025-08-27.basil", "created": int(time.time()), "livemode": False,
        "pending_webhooks": 1, "request": {"id": None, "idempotency_key": None},
        "data": {"object": {
            "id": session_id, "object": "checkout.session", "amount_total": amount,
            "currency": "usd", "status": "complete", "payment_status": "paid",
            "payment_intent": f"pi_{session_id}", "mode": "payment"}},
    })
    ts = int(time.time())
    signature = hmac.new(SECRET.encode(), f"{ts}.{payload}".encode(), hashlib.sha256).hexdigest()
    return payload, f"t={ts},v1={signature}"


def _report(name: str, times: list[float], queries: list[int]) -> None:
    ordered = sorted(times)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    median = statistics.median(times) * 1000
    print(f"{name:<22} {len(times) / sum(times):8.1f} /s   p50 {median:6.2f} ms"
          f"   p99 {p99 * 1000:6.2f} ms   {statistics.mean(queries):5.1f} queries each")


def run(count: int) -> int:
    import responses
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    call_command("migrate", verbosity=0)
    from backoffice.catalog.models import Product, Variant
    from backoffice.checkout import cart as carts
    from backoffice.checkout.models import Cart
    from backoffice.checkout.services import CheckoutRequest, place_order
    from backoffice.inventory.services import adjust_stock
    from backoffice.money import to_minor_units
    from backoffice.orders.models import Order
    from backoffice.payments import services
    from backoffice.payments.models import Payment, PaymentEvent
    from backoffice.plugin_host.services import activate_plugins, update_plugin_config

    activate_plugins(["flat_rate_shipping"])
    update_plugin_config(identifier="stripe", active=True,
                         changes={"secret_key": "sk_test_bench", "webhook_secret": SECRET})
    product = Product.objects.create(name="Mug", slug="mug")
    mug = Variant.objects.create(product=product, sku="MUG", name="", price="300.00")
    adjust_stock(variant_id=mug.pk, quantity_change=count)
    address = {"first_name": "Amina", "line1": "Moi Avenue 1", "city": "Nairobi",
               "country": "KE"}
    calls = []
    with responses.RequestsMock() as mock:
        def session(request):
            sid = f"cs_bench_{len(calls)}"
            calls.append(sid)
            return 200, {}, json.dumps({"id": sid, "object": "checkout.session",
                                        "url": f"https://checkout.stripe.com/c/pay/{sid}",
                                        "status": "open", "payment_status": "unpaid"})

        mock.add_callback(responses.POST, "https://api.stripe.com/v1/checkout/sessions",
                          callback=session)
        for i in range(count):
            cart = Cart.objects.create()
            carts.add_to_cart(cart=cart, sku="MUG", quantity=1)
            order, _ = place_order(cart, CheckoutRequest(
                shipping_address=address, shipping_method="flat_rate",
                email=f"b{i}@example.com", payment_method="stripe"),
                idempotency_key=str(uuid.uuid4()))
            services.start_payment(order, "stripe")
    client = Client(HTTP_HOST="127.0.0.1")
    bodies = [
        _signed(f"evt_bench_{p.pk}", p.provider_reference, to_minor_units(p.amount, "USD"))
        for p in Payment.objects.order_by("pk")
    ]
    for label in ("intake (new events)", "intake (replays)"):
        times, queries = [], []
        for payload, header in bodies:
            connection.queries_log.clear()  # DEBUG keeps at most 9,000
            with CaptureQueriesContext(connection) as captured:
                started = time.perf_counter()
                response = client.post("/api/v1/payments/webhooks/stripe/", payload,
                                       content_type="application/json",
                                       HTTP_STRIPE_SIGNATURE=header)
                times.append(time.perf_counter() - started)
            queries.append(len(captured))
            assert response.status_code == 200, response.content
        _report(label, times, queries)
    times, queries = [], []
    for pk in PaymentEvent.objects.order_by("pk").values_list("pk", flat=True):
        connection.queries_log.clear()
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            services.process_event(pk)
            times.append(time.perf_counter() - started)
        queries.append(len(captured))
    _report("processing (the job)", times, queries)
    paid = Order.objects.filter(payment_status="paid").count()
    events = PaymentEvent.objects.count()
    print(f"orders paid: {paid} of {count}; events stored: {events} (of {2 * count} posted)")
    return 0 if paid == count and events == count else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=300)
    args = parser.parse_args()
    database_url = os.environ.get("DATABASE_URL", "")
    dropped = _setup_django(database_url)
    try:
        return run(args.payments)
    finally:
        if dropped:
            import psycopg
            from django.db import connections

            connections.close_all()
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dropped}"')


if __name__ == "__main__":
    sys.exit(main())
