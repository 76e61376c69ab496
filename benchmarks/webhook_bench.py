"""Webhook benchmark: how fast payment webhooks are taken in and acted on, served as deployed.

    .venv/bin/python benchmarks/webhook_bench.py                    # SQLite in a temporary folder
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres .venv/bin/python \
        benchmarks/webhook_bench.py --payments 500                  # a fresh PostgreSQL database

It makes ``--payments`` orders with an open Stripe payment each (Stripe's API answered by
``responses``, as in the tests), with ``DEBUG=0`` as in production, then:

1. **intake**: posts one signed ``checkout.session.completed`` per payment to
   ``/api/v1/payments/webhooks/stripe/`` (verify, store, enqueue on the ORM broker; the job is
   not run), then every one of them again (replays). By default through gunicorn as deployed
   (``deploy/gunicorn.conf.py``, 2 sync workers, ``DEBUG=0``, LOG_LEVEL=WARNING, on a loopback
   port), ``--clients`` client threads (4) with one request each at a time: requests/s, p50 and
   p99 measured by the client, queries per request from the server's ``Server-Timing`` header,
   gunicorn CPU per request and the load average. ``--in-process`` posts through Django's test
   client in this process instead (the application's own cost without a server; not the
   verdict);
2. **processing**: runs the job (``services.process_event``) for every stored event in this
   process, as a worker does (``DEBUG=0``).

Then the verdict, PASS or FAIL: every answer a 200, every order paid once, each event stored
once (the replays stored nothing), and intake inside Stripe's 10 s timeout at p99. It exits 1
when one fails.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.api_bench import (  # noqa: E402 - needs ROOT on the path
    Server,
    bench_env,
    loadavg,
    process_tree_cpu,
)

SECRET = "whsec_bench"  # noqa: S105 - a test-mode signing secret for this run only
WEBHOOK = "/api/v1/payments/webhooks/stripe/"
STRIPE_TIMEOUT_MS = 10_000
TIMING = re.compile(r'desc="(\d+) queries"')


def _setup_django(database_url: str) -> str | None:
    """Point Django at a fresh database, DEBUG off; returns the PostgreSQL database to drop, if
    any. The environment is the gunicorn server's too (one SECRET_KEY: plugin secrets are
    encrypted with it)."""
    data_dir = Path(tempfile.mkdtemp(prefix="webhook-bench-"))
    os.environ.update(bench_env(data_dir, "backoffice.settings", cachalot=None))
    os.environ["PUBLIC_URL"] = "https://shop.example.com"
    dropped = None
    if database_url.startswith("postgres"):
        import psycopg

        dropped = f"bench_webhook_{os.getpid()}"
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


def _p99(times: list[float]) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, math.ceil(len(ordered) * 0.99) - 1)]


def _report(name: str, times: list[float], queries: list[int], *, wall: float | None = None,
            cpu: float | None = None) -> None:
    """``wall``: seconds the whole batch took (concurrent clients), else the sum of the times."""
    rate = len(times) / (wall if wall is not None else sum(times))
    extra = f"   gunicorn CPU {cpu * 1000 / len(times):5.1f} ms each" if cpu is not None else ""
    known = [q for q in queries if q is not None]
    print(f"{name:<22} {rate:8.1f} /s   p50 {statistics.median(times) * 1000:6.2f} ms"
          f"   p99 {_p99(times) * 1000:7.2f} ms   "
          f"{statistics.mean(known) if known else float('nan'):5.1f} queries each{extra}"
          f"   load {loadavg()}", flush=True)


def _post_all(server: Server, bodies: list[tuple[str, str]], clients: int
              ) -> tuple[list[float], list[int | None], list[int], float, float]:
    """Every body once, ``clients`` threads at a time: (times, queries, statuses, wall, CPU)."""
    import http.client

    times: list[float] = [0.0] * len(bodies)
    queries: list[int | None] = [None] * len(bodies)
    statuses: list[int] = [0] * len(bodies)
    cursor = iter(range(len(bodies)))
    lock = threading.Lock()

    def client() -> None:
        while True:
            with lock:
                i = next(cursor, None)
            if i is None:
                return
            payload, header = bodies[i]
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            started = time.perf_counter()
            try:
                conn.request("POST", WEBHOOK, body=payload.encode(), headers={
                    "Content-Type": "application/json", "Stripe-Signature": header})
                response = conn.getresponse()
                response.read()
                statuses[i] = response.status
                timing = TIMING.search(response.getheader("Server-Timing") or "")
                queries[i] = int(timing[1]) if timing else None
            except (OSError, http.client.HTTPException):
                statuses[i] = 0
            finally:
                times[i] = time.perf_counter() - started
                conn.close()

    cpu_before, started = process_tree_cpu(server.process.pid), time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    return times, queries, statuses, wall, process_tree_cpu(server.process.pid) - cpu_before


def run(count: int, *, in_process: bool = False, clients: int = 4) -> int:  # noqa: PLR0915
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
    bodies = [
        _signed(f"evt_bench_{p.pk}", p.provider_reference, to_minor_units(p.amount, "USD"))
        for p in Payment.objects.order_by("pk")
    ]
    checks: list[tuple[str, bool, str]] = []
    if in_process:
        print(f"intake in this process (Django's test client, DEBUG=0; not the verdict), "
              f"{connection.vendor}, {count} payments; load average {loadavg()}", flush=True)
        client = Client(HTTP_HOST="127.0.0.1")
        for label in ("intake (new events)", "intake (replays)"):
            times, queries, bad = [], [], 0
            for payload, header in bodies:
                with CaptureQueriesContext(connection) as captured:
                    started = time.perf_counter()
                    response = client.post(WEBHOOK, payload, content_type="application/json",
                                           HTTP_STRIPE_SIGNATURE=header)
                    times.append(time.perf_counter() - started)
                queries.append(len(captured))
                bad += response.status_code != 200
            _report(label, times, queries)
            checks.append((f"{label}: every answer a 200", not bad, f"{bad} not 200"))
    else:
        from django.db import connections

        connections.close_all()  # SQLite: let the server write
        data_dir = Path(os.environ["DATA_DIR"])
        server = Server(dict(os.environ), data_dir / "gunicorn.log", "webhooks")
        try:
            server.wait_ready("/api/v1/products?page_size=1")
            print(f"intake through gunicorn (2 sync workers, DEBUG=0) on 127.0.0.1:{server.port}"
                  f", {clients} clients, {connection.vendor}, {count} payments; load average "
                  f"{loadavg()}", flush=True)
            for label in ("intake (new events)", "intake (replays)"):
                times, queries, statuses, wall, cpu = _post_all(server, bodies, clients)
                _report(label, times, queries, wall=wall, cpu=cpu)
                bad = sum(status != 200 for status in statuses)
                checks.append((f"{label}: every answer a 200", not bad, f"{bad} not 200"))
                checks.append((f"{label}: p99 within Stripe's 10 s",
                               _p99(times) * 1000 < STRIPE_TIMEOUT_MS,
                               f"{_p99(times) * 1000:.1f} ms"))
        finally:
            server.stop()
    times, queries = [], []
    for pk in PaymentEvent.objects.order_by("pk").values_list("pk", flat=True):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            services.process_event(pk)
            times.append(time.perf_counter() - started)
        queries.append(len(captured))
    _report("processing (the job)", times, queries)
    paid = Order.objects.filter(payment_status="paid").count()
    events = PaymentEvent.objects.count()
    checks.append(("every order paid once", paid == count, f"{paid} of {count}"))
    checks.append(("each event stored once", events == count,
                   f"{events} stored of {2 * count} posted"))
    print(f"\nverdict ({'through gunicorn' if not in_process else 'in-process'}; load average "
          f"{loadavg()}, {os.cpu_count()} CPUs):")
    for name, ok, value in checks:
        print(f"  {'PASS' if ok else 'FAIL'}  {name}: {value}")
    return 0 if all(ok for _name, ok, _value in checks) else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=300)
    parser.add_argument("--clients", type=int, default=4,
                        help="client threads posting to gunicorn at once")
    parser.add_argument("--in-process", action="store_true",
                        help="post through Django's test client in this process (no server)")
    args = parser.parse_args()
    database_url = os.environ.get("DATABASE_URL", "")
    dropped = _setup_django(database_url)
    try:
        return run(args.payments, in_process=args.in_process, clients=args.clients)
    finally:
        shutil.rmtree(os.environ["DATA_DIR"], ignore_errors=True)
        if dropped:
            import psycopg
            from django.db import connections

            connections.close_all()
            with psycopg.connect(database_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{dropped}"')


if __name__ == "__main__":
    sys.exit(main())
