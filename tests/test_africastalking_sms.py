"""The bundled Africa's Talking SMS channel (``plugins/africastalking_sms.py``).

At the HTTP level (``responses``), the SDK's real request and Africa's Talking's documented
answers; then through the core (``notifications.services.send``): what each answer does to the
notification row; then delivery reports through the storefront API's endpoint; and one message
sent over real HTTP to a local fake of Africa's Talking (``tests/fake_providers.py``).
"""

import json
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
import responses
from django.utils import timezone

import plugins.africastalking_sms as at_sms
from backoffice.notifications import services
from backoffice.notifications.models import MessageTemplate, Notification, Status
from backoffice.plugin_host.errors import WebhookVerificationError
from backoffice.plugin_host.protocols import Notification as Message
from backoffice.plugin_host.protocols import WebhookRequest
from backoffice.plugin_host.services import update_plugin_config
from tests.fake_providers import FakeAfricasTalking

SANDBOX_URL = "https://api.sandbox.africastalking.com/version1/messaging"
LIVE_URL = "https://api.africastalking.com/version1/messaging"
API_KEY = "atsk_0123456789abcdef0123456789abcdef"
SANDBOX = {"username": "sandbox", "api_key": API_KEY, "sender_id": "", "api_base": ""}
NUMBER = "+254711000111"
PUBLIC_URL = "https://shop.example.com"


def answer(code=101, status="Success", message_id="ATPid_SampleTxnId123", cost="KES 0.8000",
           number="+254711XXXYYY", message="Sent to 1/1 Total Cost: KES 0.8000"):
    """Africa's Talking's documented answer to a send, one recipient."""
    return {"SMSMessageData": {"Message": message, "Recipients": [
        {"statusCode": code, "number": number, "status": status, "cost": cost,
         "messageId": message_id}]}}


DOCUMENTED = answer()


def message(body="Your order 1042 is confirmed.", recipient=NUMBER):
    return Message(recipient=recipient, subject="", body=body, event="order_placed",
                   notification_id=7)


def send(config=SANDBOX, **kwargs):
    return at_sms.AfricasTalkingSmsChannel().send(message(**kwargs), config)


def form(call) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(call.request.body).items()}


# --- The request ------------------------------------------------------------------------------


@responses.activate
def test_the_sandbox_username_posts_the_form_to_the_sandbox_host_and_reads_the_answer():
    responses.add(responses.POST, SANDBOX_URL, json=DOCUMENTED, status=201)
    result = send({**SANDBOX, "sender_id": "MYSHOP"})

    assert (result.status, result.provider_message_id, result.cost) == (
        "sent", "ATPid_SampleTxnId123", "KES 0.8000")
    [call] = responses.calls
    assert call.request.url == SANDBOX_URL
    assert call.request.headers["apiKey"] == API_KEY
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form(call) == {"username": "sandbox", "to": NUMBER,
                          "message": "Your order 1042 is confirmed.", "from": "MYSHOP",
                          "bulkSMSMode": "1"}
    assert call.request.req_kwargs["timeout"] == at_sms.TIMEOUT


@responses.activate
def test_any_other_username_is_live_and_no_sender_id_sends_no_from():
    responses.add(responses.POST, LIVE_URL, json=DOCUMENTED, status=201)
    result = send({**SANDBOX, "username": "kikoy-shop"})

    assert result.status == "sent"
    [call] = responses.calls
    assert call.request.url == LIVE_URL
    assert form(call)["username"] == "kikoy-shop"
    assert "from" not in form(call)


@responses.activate
def test_an_answer_whose_content_type_has_a_charset_reaches_the_plugin_as_text_and_is_read():
    # The SDK parses JSON only for exactly "application/json": this one comes back as a str.
    responses.add(responses.POST, SANDBOX_URL, body=json.dumps(DOCUMENTED), status=201,
                  content_type="application/json; charset=UTF-8")
    result = send()
    assert (result.status, result.provider_message_id, result.cost) == (
        "sent", "ATPid_SampleTxnId123", "KES 0.8000")


@pytest.mark.parametrize("code", [100, 101, 102])
@responses.activate
def test_processed_sent_and_queued_are_sent(code):
    responses.add(responses.POST, SANDBOX_URL, json=answer(code=code, message_id=f"ATX{code}"),
                  status=201)
    assert send().status == "sent"


@pytest.mark.parametrize(("code", "status", "says"), [
    (403, "InvalidPhoneNumber", "not valid"),
    (404, "UnsupportedNumberType", "cannot be sent SMS"),
    (406, "UserInBlacklist", "blocked"),
    (409, "DoNotDisturbRejection", "do-not-disturb"),
])
@responses.activate
def test_a_number_that_can_never_receive_it_fails_for_good(code, status, says):
    responses.add(responses.POST, SANDBOX_URL, status=201, json=answer(
        code=code, status=status, message_id="None", cost="0",
        message="Sent to 0/1 Total Cost: 0"))
    result = send()
    assert result.status == "failed"
    assert says in result.error and status in result.error and str(code) in result.error
    assert result.provider_message_id == "" and result.cost == ""


@pytest.mark.parametrize(("code", "status", "says"), [
    (401, "RiskHold", "risk review"),
    (402, "InvalidSenderId", "sender ID"),
    (405, "InsufficientBalance", "top it up"),
    (407, "CouldNotRoute", "route"),
    (500, "InternalServerError", "its side"),
    (501, "GatewayError", "gateway"),
    (502, "RejectedByGateway", "gateway"),
    (418, "SomethingNew", "does not document"),
])
@responses.activate
def test_what_the_account_or_the_networks_can_fix_is_raised_to_be_retried(code, status, says):
    responses.add(responses.POST, SANDBOX_URL, status=201, json=answer(
        code=code, status=status, message_id="None", cost="0"))
    with pytest.raises(at_sms.TemporarySmsFailure, match=says):
        send()


@responses.activate
def test_an_answer_with_no_recipient_is_read_by_its_message():
    # Africa's Talking's answer to a sender ID that is not the account's.
    responses.add(responses.POST, SANDBOX_URL, status=201,
                  json={"SMSMessageData": {"Message": "InvalidSenderId", "Recipients": []}})
    with pytest.raises(at_sms.TemporarySmsFailure, match="sender ID or short code"):
        send({**SANDBOX, "sender_id": "NOTOURS"})


@responses.activate
def test_an_answer_with_no_recipient_naming_a_refusal_fails_and_an_unknown_one_retries():
    responses.add(responses.POST, SANDBOX_URL, status=201,
                  json={"SMSMessageData": {"Message": "UserInBlacklist", "Recipients": []}})
    responses.add(responses.POST, SANDBOX_URL, status=201,
                  json={"SMSMessageData": {"Message": "Something odd", "Recipients": []}})
    assert send().status == "failed"
    with pytest.raises(at_sms.TemporarySmsFailure, match="to no one: Something odd"):
        send()


@responses.activate
def test_an_http_500_is_retried():
    responses.add(responses.POST, SANDBOX_URL, status=500, body="Internal Server Error",
                  content_type="text/plain")
    with pytest.raises(at_sms.TemporarySmsFailure, match="Internal Server Error"):
        send()


@responses.activate
def test_a_wrong_api_key_is_retried_with_a_message_to_check_it_that_never_holds_the_key():
    responses.add(responses.POST, SANDBOX_URL, status=401,
                  body="The supplied authentication is invalid", content_type="text/plain")
    with pytest.raises(at_sms.TemporarySmsFailure) as raised:
        send()
    assert "check that the API key" in str(raised.value)
    assert API_KEY not in str(raised.value)


@responses.activate
def test_an_error_answer_that_repeats_the_key_is_shown_without_it():
    responses.add(responses.POST, SANDBOX_URL, status=400, content_type="text/plain",
                  body=f"Invalid request from apiKey {API_KEY}")
    with pytest.raises(at_sms.TemporarySmsFailure) as raised:
        send()
    assert API_KEY not in str(raised.value) and "[API key]" in str(raised.value)


@responses.activate
def test_a_do_not_disturb_answered_as_http_409_with_the_usual_body_fails_for_good():
    # As documented: HTTP 409, and the recipient's statusCode 409.
    responses.add(responses.POST, SANDBOX_URL, status=409, json=answer(
        code=409, status="DoNotDisturbRejection", message_id="None", cost="0",
        number="+2348000000000", message="Sent to 0/1 Total Cost: 0"))
    result = send(recipient="+2348000000000")
    assert result.status == "failed" and "DoNotDisturbRejection" in result.error


@pytest.mark.parametrize("error", [requests.ConnectTimeout("connect"),
                                   requests.ConnectionError("refused")])
@responses.activate
def test_no_connection_is_retried(error):
    responses.add(responses.POST, SANDBOX_URL, body=error)
    with pytest.raises(at_sms.TemporarySmsFailure, match="Africa's Talking"):
        send()


@responses.activate
def test_no_answer_after_sending_is_not_retried_so_the_sms_never_goes_twice():
    responses.add(responses.POST, SANDBOX_URL, body=requests.ReadTimeout("read"))
    result = send()
    assert result.status == "failed" and "may or may not have gone out" in result.error


@responses.activate
def test_an_answer_that_is_not_json_is_retried():
    responses.add(responses.POST, SANDBOX_URL, status=200, body="<html>proxy</html>",
                  content_type="text/html")
    with pytest.raises(at_sms.TemporarySmsFailure, match="not JSON"):
        send()


@pytest.mark.parametrize("recipient", ["0712345678", "254712345678", "+2547", ""])
@responses.activate
def test_a_recipient_not_in_international_form_fails_without_a_request(recipient):
    result = send(recipient=recipient)
    assert result.status == "failed" and "international form" in result.error
    assert len(responses.calls) == 0


@responses.activate
def test_an_empty_message_fails_without_a_request():
    result = send(body="  \n")
    assert result.status == "failed" and "template" in result.error
    assert len(responses.calls) == 0


@pytest.mark.parametrize(("values", "field"), [
    ({"username": "Sandbox"}, "username"),
    ({"username": "sandbox "}, "username"),
    ({"username": " shop"}, "username"),
    ({"sender_id": "TWELVE_CHARS"}, "sender_id"),
    ({"sender_id": "1234567890123456"}, "sender_id"),
    ({"sender_id": "KIKOY\u00e9"}, "sender_id"),
    ({"api_base": "http://example.com"}, "api_base"),
])
def test_settings_the_sdk_or_the_networks_would_not_take_are_refused(values, field):
    assert field in at_sms.validate_config({**SANDBOX, **values})


@pytest.mark.parametrize("values", [
    {}, {"username": "kikoy-shop", "sender_id": "KIKOY"}, {"sender_id": "AFRICASTKNG"},
    {"sender_id": "20414"}, {"api_base": "http://127.0.0.1:8999"},
    {"api_base": "https://sms-proxy.example.com"},
])
def test_good_settings_pass(values):
    assert at_sms.validate_config({**SANDBOX, **values}) == {}


def test_the_api_base_replaces_the_host_on_this_service_only():
    service = at_sms.sms_service({**SANDBOX, "api_base": "https://sms-proxy.example.com/"})
    assert service._make_url("/messaging") == "https://sms-proxy.example.com/version1/messaging"
    other = at_sms.sms_service(SANDBOX)
    assert other._make_url("/messaging") == SANDBOX_URL


# --- Delivery reports (the plugin) ------------------------------------------------------------


def report(**fields) -> WebhookRequest:
    return WebhookRequest(body=urlencode(fields).encode(),
                          headers={"Content-Type": "application/x-www-form-urlencoded"})


@pytest.mark.parametrize(("status", "kind"), [
    ("Success", "delivered"), ("Sent", "sent"), ("Submitted", "sent"), ("Buffered", "sent"),
    ("Failed", "failed"), ("Rejected", "failed"), ("AbsentSubscriber", "failed"),
    ("Expired", "failed"), ("SomethingNew", "sent"),
])
def test_each_documented_report_status_is_read(status, kind):
    [got] = at_sms.AfricasTalkingSmsChannel().parse_delivery_report(
        report(id="ATXid_1", status=status, phoneNumber=NUMBER, networkCode="63902"), SANDBOX)
    assert (got.provider_message_id, got.status) == ("ATXid_1", kind)
    assert bool(got.error) == (kind == "failed")


def test_a_failed_report_says_why():
    [got] = at_sms.AfricasTalkingSmsChannel().parse_delivery_report(
        report(id="ATXid_1", status="Failed", phoneNumber=NUMBER, networkCode="63902",
               failureReason="UserDoesNotExist", retryCount="0"), SANDBOX)
    assert got.status == "failed"
    assert "does not exist" in got.error and "UserDoesNotExist" in got.error


@pytest.mark.parametrize("body", [b"", b"status=Success", b"id=ATXid_1", b"id=&status=Success",
                                  b"{not json", b"[1, 2]"])
def test_a_body_without_an_id_and_a_status_is_not_a_report(body):
    with pytest.raises(WebhookVerificationError):
        at_sms.AfricasTalkingSmsChannel().parse_delivery_report(
            WebhookRequest(body=body, headers={}), SANDBOX)


# --- Through the core -------------------------------------------------------------------------


@pytest.fixture
def sms(register_plugin, settings):
    settings.PUBLIC_URL = PUBLIC_URL
    register_plugin(at_sms, name="africastalking_sms", config=SANDBOX)
    # Our own wording, whatever the shipped templates say.
    MessageTemplate.objects.create(event="staff_low_stock", channel="sms", language="en",
                                   text="Low stock: {{ sku }}, {{ available }} left.")


def queued(recipient=NUMBER) -> Notification:
    return Notification.objects.create(
        event="staff_low_stock", event_key=f"stock:1:low:{recipient}", audience="staff",
        channel="sms", recipient=recipient, next_attempt_at=timezone.now(),
        context={"sku": "MUG", "product_name": "Mug", "warehouse": "Main", "available": 2,
                 "threshold": 5})


@responses.activate
def test_a_sent_message_records_africas_talkings_id_and_cost(sms):
    responses.add(responses.POST, SANDBOX_URL, json=DOCUMENTED, status=201)
    row = queued()
    assert services.send(row.pk) == Status.SENT

    row.refresh_from_db()
    assert (row.status, row.provider_message_id, row.cost, row.attempts) == (
        Status.SENT, "ATPid_SampleTxnId123", "KES 0.8000", 1)
    assert row.body == "Low stock: MUG, 2 left." and row.sent_at is not None
    assert form(responses.calls[0])["message"] == "Low stock: MUG, 2 left."


@responses.activate
def test_an_invalid_number_fails_once_and_is_not_tried_again(sms):
    responses.add(responses.POST, SANDBOX_URL, status=201, json=answer(
        code=403, status="InvalidPhoneNumber", message_id="None", cost="0"))
    row = queued()
    assert services.send(row.pk) == Status.FAILED

    row.refresh_from_db()
    assert (row.status, row.attempts, row.next_attempt_at) == (Status.FAILED, 1, None)
    assert "InvalidPhoneNumber" in row.error and row.provider_message_id == ""
    assert services.send(row.pk) == "skipped"
    assert len(responses.calls) == 1


@pytest.mark.parametrize("reply", [
    {"status": 201, "json": answer(code=405, status="InsufficientBalance", message_id="None",
                                   cost="0")},
    {"status": 500, "body": "Internal Server Error", "content_type": "text/plain"},
])
@responses.activate
def test_no_credit_or_a_server_error_queues_the_message_again_for_later(sms, reply):
    responses.add(responses.POST, SANDBOX_URL, **reply)
    row = queued()
    assert services.send(row.pk) == Status.QUEUED

    row.refresh_from_db()
    assert (row.status, row.attempts) == (Status.QUEUED, 1)
    assert row.next_attempt_at > timezone.now()
    assert row.error.startswith("TemporarySmsFailure: Africa's Talking")
    assert API_KEY not in row.error


# --- Delivery reports through the API ----------------------------------------------------------


def report_path(channel="sms") -> str:
    return urlsplit(services.delivery_report_url(channel)).path


def post_report(client, path=None, **fields):
    return client.post(path or report_path(), urlencode(fields),
                       content_type="application/x-www-form-urlencoded")


@pytest.fixture
def sent_row(sms):
    row = queued()
    Notification.objects.filter(pk=row.pk).update(
        status=Status.SENT, provider_message_id="ATXid_abc", sent_at=timezone.now(),
        attempts=1)
    row.refresh_from_db()
    return row


def test_the_delivery_report_url_is_under_the_public_url(sms):
    url = services.delivery_report_url("sms")
    assert url.startswith(f"{PUBLIC_URL}/api/v1/notifications/delivery-reports/sms/")
    assert url.endswith(f"/{services.delivery_report_token('sms')}/")


def test_a_success_report_marks_the_message_delivered_once(client, sent_row):
    response = post_report(client, id="ATXid_abc", status="Success", phoneNumber=NUMBER,
                           networkCode="63902")
    assert (response.status_code, response.json()) == (200, {"updated": 1})
    sent_row.refresh_from_db()
    assert sent_row.status == Status.DELIVERED and sent_row.delivered_at is not None
    delivered_at = sent_row.delivered_at

    replay = post_report(client, id="ATXid_abc", status="Success", phoneNumber=NUMBER,
                         networkCode="63902")
    assert (replay.status_code, replay.json()) == (200, {"updated": 0})
    late_failure = post_report(client, id="ATXid_abc", status="Failed",
                               failureReason="DeliveryFailure")
    assert late_failure.json() == {"updated": 0}
    sent_row.refresh_from_db()
    assert (sent_row.status, sent_row.delivered_at, sent_row.error) == (
        Status.DELIVERED, delivered_at, "")


def test_a_failed_report_marks_the_message_failed_with_the_reason(client, sent_row):
    response = post_report(client, id="ATXid_abc", status="Failed", phoneNumber=NUMBER,
                           networkCode="63902", failureReason="UserDoesNotExist",
                           retryCount="0")
    assert response.json() == {"updated": 1}
    sent_row.refresh_from_db()
    assert sent_row.status == Status.FAILED
    assert "does not exist" in sent_row.error and "UserDoesNotExist" in sent_row.error


def test_an_intermediate_report_changes_nothing(client, sent_row):
    response = post_report(client, id="ATXid_abc", status="Buffered", phoneNumber=NUMBER)
    assert response.json() == {"updated": 0}
    sent_row.refresh_from_db()
    assert sent_row.status == Status.SENT


def test_a_report_for_a_message_we_do_not_know_changes_nothing(client, sent_row):
    response = post_report(client, id="ATXid_other", status="Success")
    assert response.json() == {"updated": 0}


def _is_error(response, status, code):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"detail", "code", "errors"} and body["code"] == code, body


@pytest.mark.parametrize("path", [
    "/api/v1/notifications/delivery-reports/sms/not-the-token/",
    "/api/v1/notifications/delivery-reports/sms/" + "0" * 40 + "/",
])
def test_a_wrong_token_is_a_404_and_changes_nothing(client, sent_row, path):
    _is_error(post_report(client, path, id="ATXid_abc", status="Success"), 404, "not_found")
    sent_row.refresh_from_db()
    assert sent_row.status == Status.SENT


def test_the_token_of_another_channel_is_a_404(client, sent_row):
    path = report_path("sms").replace(services.delivery_report_token("sms"),
                                      services.delivery_report_token("email"))
    _is_error(post_report(client, path, id="ATXid_abc", status="Success"), 404, "not_found")


def test_a_channel_that_takes_no_reports_or_is_not_active_is_a_404(client, sent_row,
                                                                   register_plugin):
    # The email channel has no parse_delivery_report.
    update_plugin_config(identifier="email", active=True, changes={})
    _is_error(post_report(client, report_path("email"), id="x", status="Success"), 404,
              "not_found")
    register_plugin(at_sms, name="africastalking_sms", config=SANDBOX, active=False)
    _is_error(post_report(client, id="ATXid_abc", status="Success"), 404, "not_found")
    _is_error(post_report(client, report_path("whatsapp"), id="x", status="Success"), 404,
              "not_found")
    sent_row.refresh_from_db()
    assert sent_row.status == Status.SENT


def test_a_body_that_is_not_a_report_is_a_400(client, sent_row):
    _is_error(post_report(client, status="Success"), 400, "invalid_delivery_report")
    sent_row.refresh_from_db()
    assert sent_row.status == Status.SENT


def test_a_body_over_the_upload_limit_is_a_413_and_changes_nothing(client, sent_row, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    response = post_report(client, id="ATXid_abc", status="Success", padding="x" * 200)
    _is_error(response, 413, "payload_too_large")
    sent_row.refresh_from_db()
    assert sent_row.status == Status.SENT


def test_a_get_is_a_405(client, sms):
    _is_error(client.get(report_path()), 405, "method_not_allowed")


# --- Over real HTTP, against a fake Africa's Talking --------------------------------------------


def test_an_sms_goes_through_the_sdk_to_a_fake_africas_talking_and_its_report_comes_back(
        client, settings, db):
    settings.PUBLIC_URL = PUBLIC_URL
    MessageTemplate.objects.create(event="staff_low_stock", channel="sms", language="en",
                                   text="Low stock: {{ sku }}, {{ available }} left.")
    blocked = "+254722000406"
    with FakeAfricasTalking(username="kikoy-shop", api_key=API_KEY,
                            report_url=services.delivery_report_url("sms"),
                            refusals={blocked: (406, "UserInBlacklist")}) as fake:
        # A live username: without api_base this would go to api.africastalking.com.
        update_plugin_config(identifier="africastalking_sms", active=True, changes={
            "username": "kikoy-shop", "api_key": API_KEY, "sender_id": "KIKOY",
            "api_base": fake.url})
        row, refused = queued(), queued(blocked)
        assert services.send(row.pk) == Status.SENT
        assert services.send(refused.pk) == Status.FAILED

        first, second = fake.sent("POST", "/version1/messaging")
        assert first.headers["apikey"] == API_KEY
        assert first.headers["accept"] == "application/json"
        assert first.form == {"username": "kikoy-shop", "to": NUMBER, "from": "KIKOY",
                              "message": "Low stock: MUG, 2 left.", "bulkSMSMode": "1"}
        assert second.form["to"] == blocked
        row.refresh_from_db()
        refused.refresh_from_db()
        assert row.provider_message_id in fake.messages
        assert (row.status, row.cost) == (Status.SENT, "KES 0.8000")
        assert refused.status == Status.FAILED and "UserInBlacklist" in refused.error

        webhook = fake.report(row.provider_message_id, "Success")
        assert fake.problems == []

    path = urlsplit(webhook.url).path
    response = client.post(path, webhook.body, content_type=webhook.headers["Content-Type"])
    assert (response.status_code, response.json()) == (200, {"updated": 1})
    row.refresh_from_db()
    assert row.status == Status.DELIVERED
    assert row.delivered_at - row.sent_at < timedelta(minutes=1)
