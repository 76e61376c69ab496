"""Local fakes of the payment providers' HTTP APIs, for tests that run the whole purchase path.

Each fake is a stdlib ``ThreadingHTTPServer`` on 127.0.0.1 (a free port) in a thread. It answers
the requests the plugins make with the shapes the providers document, keeps what it was sent
(``requests``) so a test can check it, and plays the provider's side of a payment: ``pay(...)``
settles a payment and returns the webhook or callback the provider would then send, signed as
the provider signs it, for the test to deliver to the back office (``deliver``).

Point a plugin at a fake with its ``api_base`` setting (``fake.url``). Anything a fake did not
expect (a wrong key, a bad password, an unknown path) gets the provider's error answer and is
listed in ``fake.problems``, which the test asserts empty.
"""

from __future__ import annotations

import abc
import base64
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

JSON = "application/json"


def order_is_paid(order: Any) -> bool:
    """Whether the order counts as paid, whichever way the order records it."""
    if hasattr(order, "payment_status"):
        return order.payment_status == "paid"
    return order.status == "paid"


@dataclass(frozen=True)
class Received:
    """One request a fake was sent."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def form(self) -> dict[str, str]:
        """A form-encoded body (Stripe's), flat: ``{"line_items[0][quantity]": "2", ...}``."""
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))


@dataclass(frozen=True)
class Webhook:
    """What the provider would post to the back office: the URL, the raw body, the headers."""

    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def deliver(client: Any, webhook: Webhook) -> Any:
    """Post ``webhook`` through Django's test client, exactly as received from the provider."""
    parts = urlsplit(webhook.url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    extra = {"HTTP_" + name.upper().replace("-", "_"): value
             for name, value in webhook.headers.items()}
    return client.post(path, webhook.body, content_type=JSON, **extra)


class FakeProvider(abc.ABC):
    """The server and the bookkeeping; subclasses answer in ``answer``."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.problems: list[str] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                parts = urlsplit(self.path)
                received = Received(
                    method=self.command, path=parts.path,
                    query=dict(parse_qsl(parts.query, keep_blank_values=True)),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
                with fake._lock:
                    fake.requests.append(received)
                    try:
                        status, payload = fake.answer(received)
                    except Exception as exc:  # noqa: BLE001 - shown to the test, not swallowed
                        fake.problems.append(f"{received.method} {received.path}: {exc!r}")
                        status, payload = 500, {"error": "the fake failed"}
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", JSON)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = _handle

            def log_message(self, *args: Any) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    @abc.abstractmethod
    def answer(self, request: Received) -> tuple[int, Any]:
        """``(status, JSON payload)`` for one request, as the provider answers it."""

    def refuse(self, why: str, status: int, payload: Any) -> tuple[int, Any]:
        self.problems.append(why)
        return status, payload

    def sent(self, method: str, path: str) -> list[Received]:
        """The requests received with that method and path (a regex for the path)."""
        with self._lock:
            return [r for r in self.requests
                    if r.method == method and re.fullmatch(path, r.path)]


# --- Stripe ---------------------------------------------------------------------------------------


def stripe_signature(secret: str, payload: bytes, timestamp: int | None = None) -> str:
    """``Stripe-Signature`` as Stripe computes it: HMAC-SHA256 of ``"{t}.{payload}"``."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    signed = f"{timestamp}.".encode() + payload
    return f"t={timestamp},v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}"


class FakeStripe(FakeProvider):
    """Checkout Sessions: create (form-encoded, with an idempotency key) and retrieve."""

    def __init__(self, *, secret_key: str, webhook_secret: str, webhook_url: str) -> None:
        super().__init__()
        self.secret_key, self.webhook_secret = secret_key, webhook_secret
        self.webhook_url = webhook_url
        self.sessions: dict[str, dict[str, Any]] = {}
        self._by_key: dict[str, tuple[bytes, dict[str, Any]]] = {}

    @staticmethod
    def _error(kind: str, message: str, code: str | None = None) -> dict[str, Any]:
        return {"error": {"type": kind, "message": message, "code": code}}

    def answer(self, request: Received) -> tuple[int, Any]:
        if request.headers.get("authorization") != f"Bearer {self.secret_key}":
            return self.refuse("wrong or no Bearer key", 401, self._error(
                "invalid_request_error", "Invalid API Key provided."))
        if request.method == "POST" and request.path == "/v1/checkout/sessions":
            return self._create(request)
        found = re.fullmatch(r"/v1/checkout/sessions/([^/]+)", request.path)
        if request.method == "GET" and found and found.group(1) in self.sessions:
            return 200, self.sessions[found.group(1)]
        return self.refuse(f"unexpected {request.method} {request.path}", 404, self._error(
            "invalid_request_error", f"Unrecognized request URL ({request.path}).",
            "resource_missing"))

    def _create(self, request: Received) -> tuple[int, Any]:
        key = request.headers.get("idempotency-key", "")
        if key in self._by_key:
            # Stripe answers a retried key with the first answer, and refuses other parameters.
            body, session = self._by_key[key]
            if body != request.body:
                return self.refuse("an idempotency key reused with other parameters", 400,
                                   self._error("idempotency_error", "Keys for idempotent "
                                               "requests can only be used with the same "
                                               "parameters they were first used with."))
            return 200, session
        form = request.form
        lines = sorted({int(m.group(1)) for k in form
                        if (m := re.match(r"line_items\[(\d+)\]", k))})
        total = sum(int(form[f"line_items[{i}][price_data][unit_amount]"])
                    * int(form[f"line_items[{i}][quantity]"]) for i in lines)
        session_id = f"cs_test_{secrets.token_hex(12)}"
        session = {
            "id": session_id, "object": "checkout.session", "livemode": False,
            "mode": form["mode"], "status": "open", "payment_status": "unpaid",
            "amount_subtotal": total, "amount_total": total,
            "currency": form["line_items[0][price_data][currency]"],
            "client_reference_id": form.get("client_reference_id"),
            "customer_email": form.get("customer_email"),
            "metadata": {k[len("metadata["):-1]: v for k, v in form.items()
                         if k.startswith("metadata[")},
            "success_url": form["success_url"], "cancel_url": form["cancel_url"],
            "expires_at": int(form["expires_at"]), "created": int(time.time()),
            "payment_intent": None,
            "url": f"https://checkout.stripe.com/c/pay/{session_id}",
        }
        self.sessions[session_id] = session
        self._by_key[key] = (request.body, session)
        return 200, session

    def pay(self, session_id: str) -> Webhook:
        """The customer pays on the hosted page: the session completes, and Stripe sends
        ``checkout.session.completed``, signed with the endpoint's secret."""
        with self._lock:
            session = self.sessions[session_id]
            session.update(status="complete", payment_status="paid", url=None,
                           payment_intent=f"pi_{secrets.token_hex(12)}")
            event = {
                "id": f"evt_{secrets.token_hex(12)}", "object": "event",
                "api_version": "2025-08-27.basil", "created": int(time.time()),
                "livemode": False, "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None},
                "type": "checkout.session.completed", "data": {"object": dict(session)},
            }
        body = json.dumps(event).encode()
        return Webhook(self.webhook_url, body,
                       {"Stripe-Signature": stripe_signature(self.webhook_secret, body)})


# --- Daraja (M-Pesa) ------------------------------------------------------------------------------


class FakeDaraja(FakeProvider):
    """OAuth, STK push and STK push query, checking credentials and the push's password."""

    def __init__(self, *, consumer_key: str, consumer_secret: str, shortcode: str,
                 passkey: str) -> None:
        super().__init__()
        self.basic = "Basic " + base64.b64encode(
            f"{consumer_key}:{consumer_secret}".encode()).decode()
        self.shortcode, self.passkey = shortcode, passkey
        self.tokens: set[str] = set()
        self.pushes: dict[str, dict[str, Any]] = {}  # CheckoutRequestID -> push and result

    @staticmethod
    def _error(code: str, message: str) -> dict[str, Any]:
        return {"requestId": secrets.token_hex(6), "errorCode": code, "errorMessage": message}

    def answer(self, request: Received) -> tuple[int, Any]:
        if request.method == "GET" and request.path == "/oauth/v1/generate":
            if (request.query.get("grant_type") != "client_credentials"
                    or request.headers.get("authorization") != self.basic):
                return self.refuse("wrong consumer key or secret", 400,
                                   self._error("400.008.01", "Invalid Authentication passed"))
            token = secrets.token_urlsafe(20)
            self.tokens.add(token)
            return 200, {"access_token": token, "expires_in": "3599"}
        auth = request.headers.get("authorization", "")
        if auth.removeprefix("Bearer ") not in self.tokens:
            return self.refuse("no valid access token", 401,
                               self._error("404.001.03", "Invalid Access Token"))
        body = request.json
        password = base64.b64encode(
            f"{self.shortcode}{self.passkey}{body.get('Timestamp')}".encode()).decode()
        if body.get("BusinessShortCode") != self.shortcode or body.get("Password") != password:
            return self.refuse("wrong short code or password", 400,
                               self._error("400.002.02", "Bad Request - Invalid Password"))
        if request.method == "POST" and request.path == "/mpesa/stkpush/v1/processrequest":
            return self._push(body)
        if request.method == "POST" and request.path == "/mpesa/stkpushquery/v1/query":
            return self._query(body)
        return self.refuse(f"unexpected {request.method} {request.path}", 404,
                           self._error("404.001.01", "Resource not found"))

    def _push(self, body: dict[str, Any]) -> tuple[int, Any]:
        if not isinstance(body.get("Amount"), int) or not str(body.get("CallBackURL", "")
                                                               ).startswith("https://"):
            return self.refuse("Amount not an integer or CallBackURL not https", 400,
                               self._error("400.002.02", "Bad Request - Invalid Amount"))
        checkout_id = f"ws_CO_{time.strftime('%d%m%Y%H%M%S')}{secrets.randbelow(10**9):09d}"
        merchant_id = f"{secrets.randbelow(10**5)}-{secrets.randbelow(10**8)}-1"
        self.pushes[checkout_id] = {"request": body, "merchant_id": merchant_id,
                                    "result": None}
        return 200, {"MerchantRequestID": merchant_id, "CheckoutRequestID": checkout_id,
                     "ResponseCode": "0",
                     "ResponseDescription": "Success. Request accepted for processing",
                     "CustomerMessage": "Success. Request accepted for processing"}

    def _query(self, body: dict[str, Any]) -> tuple[int, Any]:
        push = self.pushes.get(body.get("CheckoutRequestID", ""))
        if push is None:
            return self.refuse("query for an unknown CheckoutRequestID", 400,
                               self._error("400.002.02", "Bad Request - Invalid "
                                                         "CheckoutRequestID"))
        if push["result"] is None:  # the customer has not answered the prompt yet
            return 500, self._error("500.001.1001", "The transaction is being processed")
        return 200, {"ResponseCode": "0",
                     "ResponseDescription": "The service request has been accepted "
                                            "successsfully",
                     "MerchantRequestID": push["merchant_id"],
                     "CheckoutRequestID": body["CheckoutRequestID"], "ResultCode": "0",
                     "ResultDesc": "The service request is processed successfully."}

    def pay(self, checkout_id: str, receipt: str = "NLJ7RT61SV") -> Webhook:
        """The customer enters their PIN: Daraja posts the STK callback to the push's
        ``CallBackURL`` (the amount as a JSON number with cents, as Daraja sends it)."""
        with self._lock:
            push = self.pushes[checkout_id]
            push["result"] = "0"
            sent = push["request"]
        callback = {"Body": {"stkCallback": {
            "MerchantRequestID": push["merchant_id"], "CheckoutRequestID": checkout_id,
            "ResultCode": 0, "ResultDesc": "The service request is processed successfully.",
            "CallbackMetadata": {"Item": [
                {"Name": "Amount", "Value": "AMOUNT"},
                {"Name": "MpesaReceiptNumber", "Value": receipt},
                {"Name": "Balance"},
                {"Name": "TransactionDate", "Value": int(time.strftime("%Y%m%d%H%M%S"))},
                {"Name": "PhoneNumber", "Value": int(sent["PhoneNumber"])},
            ]},
        }}}
        amount = f"{Decimal(sent['Amount']):.2f}"
        body = json.dumps(callback).replace('"AMOUNT"', amount).encode()
        return Webhook(sent["CallBackURL"], body)


# --- Chapa ----------------------------------------------------------------------------------------


class FakeChapa(FakeProvider):
    """Initialize and verify a transaction, with the Bearer secret key."""

    def __init__(self, *, secret_key: str, webhook_secret: str, webhook_url: str) -> None:
        super().__init__()
        self.secret_key, self.webhook_secret = secret_key, webhook_secret
        self.webhook_url = webhook_url
        self.mode = "test" if secret_key.startswith("CHASECK_TEST-") else "live"
        self.transactions: dict[str, dict[str, Any]] = {}  # tx_ref -> transaction

    def answer(self, request: Received) -> tuple[int, Any]:
        if request.headers.get("authorization") != f"Bearer {self.secret_key}":
            return self.refuse("wrong or no Bearer key", 401, {
                "message": "Invalid API Key or User doesn't exist", "status": "failed",
                "data": None})
        if request.method == "POST" and request.path == "/v1/transaction/initialize":
            return self._initialize(request.json)
        found = re.fullmatch(r"/v1/transaction/verify/([^/]+)", request.path)
        if request.method == "GET" and found:
            transaction = self.transactions.get(found.group(1))
            if transaction is None:
                return 400, {"message": "Invalid transaction or Transaction not found",
                             "status": "failed", "data": None}
            return 200, {"message": "Payment details", "status": "success",
                         "data": dict(transaction)}
        return self.refuse(f"unexpected {request.method} {request.path}", 404, {
            "message": "Not found", "status": "failed", "data": None})

    def _initialize(self, body: dict[str, Any]) -> tuple[int, Any]:
        missing = [name for name in ("amount", "currency", "tx_ref") if not body.get(name)]
        if missing:
            return self.refuse(f"initialize without {missing}", 400, {
                "message": {name: [f"The {name} field is required."] for name in missing},
                "status": "failed", "data": None})
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
        self.transactions[body["tx_ref"]] = {
            "first_name": body.get("first_name"), "last_name": body.get("last_name"),
            "email": body.get("email"), "currency": body["currency"],
            "amount": float(body["amount"]), "charge": 0, "mode": self.mode,
            "method": "telebirr", "type": "API", "status": "pending", "reference": None,
            "tx_ref": body["tx_ref"], "customization": body.get("customization") or {},
            "meta": None, "created_at": now, "updated_at": now,
        }
        return 200, {"message": "Hosted Link", "status": "success", "data": {
            "checkout_url": f"https://checkout.chapa.co/checkout/payment/"
                            f"{secrets.token_urlsafe(12)}"}}

    def pay(self, tx_ref: str) -> Webhook:
        """The customer pays on Chapa's page: the transaction succeeds and Chapa sends its
        webhook, signed (``x-chapa-signature``: hex HMAC-SHA256 of the body with the secret;
        ``Chapa-Signature``: the HMAC of the secret itself)."""
        with self._lock:
            transaction = self.transactions[tx_ref]
            transaction.update(status="success", reference=f"AP{secrets.token_hex(5)}",
                               charge=round(transaction["amount"] * 0.035, 2))
            webhook = {
                "event": "charge.success", "first_name": transaction["first_name"],
                "last_name": transaction["last_name"], "email": transaction["email"],
                "mobile": None, "currency": transaction["currency"],
                "amount": f"{transaction['amount']:.2f}",
                "charge": f"{transaction['charge']:.2f}", "status": "success",
                "mode": self.mode, "reference": transaction["reference"], "tx_ref": tx_ref,
                "payment_method": transaction["method"], "type": "API",
                "created_at": transaction["created_at"], "updated_at": transaction["created_at"],
            }
        body = json.dumps(webhook).encode()
        secret = self.webhook_secret.encode()
        return Webhook(self.webhook_url, body, {
            "x-chapa-signature": hmac.new(secret, body, hashlib.sha256).hexdigest(),
            "Chapa-Signature": hmac.new(secret, secret, hashlib.sha256).hexdigest(),
        })


# --- Africa's Talking (SMS) -----------------------------------------------------------------------


class FakeAfricasTalking(FakeProvider):
    """The bulk SMS endpoint (``POST /version1/messaging``, a form with the ``apiKey`` header),
    answering as Africa's Talking documents, and its delivery reports.

    A number listed in ``refusals`` (``{"+254700000403": (403, "InvalidPhoneNumber")}``) gets
    that status instead of 101 Sent. The form encoding is checked, not assumed: the fields
    are read from the raw body."""

    COST = "KES 0.8000"

    def __init__(self, *, username: str, api_key: str, report_url: str = "",
                 refusals: dict[str, tuple[int, str]] | None = None) -> None:
        super().__init__()
        self.username, self.api_key, self.report_url = username, api_key, report_url
        self.refusals = dict(refusals or {})
        self.messages: dict[str, dict[str, str]] = {}  # messageId -> the form sent

    def answer(self, request: Received) -> tuple[int, Any]:
        if request.method != "POST" or request.path != "/version1/messaging":
            return self.refuse(f"unexpected {request.method} {request.path}", 404,
                               "Not Found")
        form = request.form
        if (request.headers.get("apikey") != self.api_key
                or form.get("username") != self.username):
            # Africa's Talking answers a wrong key or username with this text and a 401.
            return self.refuse("wrong apiKey header or username", 401,
                               "The supplied authentication is invalid")
        if not request.headers.get("content-type", "").startswith(
                "application/x-www-form-urlencoded"):
            return self.refuse("not a form", 415, "Unsupported Media Type")
        if not form.get("to") or not form.get("message"):
            return self.refuse("no to or no message", 400,
                               "Request is missing required form field 'to' or 'message'")
        recipients = []
        for number in form["to"].split(","):
            code, status = self.refusals.get(number, (101, "Success"))
            message_id = f"ATXid_{secrets.token_hex(16)}" if code < 400 else "None"
            if code < 400:
                self.messages[message_id] = form
            recipients.append({"statusCode": code, "number": number, "status": status,
                               "cost": self.COST if code < 400 else "0",
                               "messageId": message_id})
        sent = sum(1 for r in recipients if r["statusCode"] < 400)
        total = f"KES {Decimal(self.COST.split()[1]) * sent:.4f}" if sent else "0"
        return 201, {"SMSMessageData": {
            "Message": f"Sent to {sent}/{len(recipients)} Total Cost: {total}",
            "Recipients": recipients}}

    def report(self, message_id: str, status: str = "Success",
               failure_reason: str = "") -> Webhook:
        """The network's word on a message: the delivery report Africa's Talking posts (a form,
        ``application/x-www-form-urlencoded``)."""
        from urllib.parse import urlencode

        form = self.messages[message_id]
        fields = {"id": message_id, "status": status, "phoneNumber": form["to"],
                  "networkCode": "99999", "retryCount": "0"}  # 99999: the sandbox's network
        if failure_reason:
            fields["failureReason"] = failure_reason
        return Webhook(self.report_url, urlencode(fields).encode(),
                       {"Content-Type": "application/x-www-form-urlencoded"})
