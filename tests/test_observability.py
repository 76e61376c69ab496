"""Every response carries a request id and a Server-Timing header; every log line the id."""

import json
import logging
import logging.config
import re

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

pytestmark = pytest.mark.django_db


def test_a_request_id_is_made_when_none_is_given(client):
    response = client.get("/health/live")
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])
    assert response["X-Request-ID"] != client.get("/health/live")["X-Request-ID"]


def test_the_callers_request_id_is_kept(client):
    response = client.get("/health/live", HTTP_X_REQUEST_ID="edge-42:abc.DEF_1")
    assert response["X-Request-ID"] == "edge-42:abc.DEF_1"


@pytest.mark.parametrize("bad", ["has spaces", "x" * 129, "quote\"d", "new\nline"])
def test_a_malformed_request_id_is_replaced(client, bad):
    response = client.get("/health/live", HTTP_X_REQUEST_ID=bad)
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])


def test_server_timing_counts_the_queries_the_request_made(client):
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/health/ready")
    header = response["Server-Timing"]
    match = re.fullmatch(r'db;dur=([\d.]+);desc="(\d+) queries", total;dur=([\d.]+)', header)
    assert match, header
    db_ms, count, total_ms = float(match[1]), int(match[2]), float(match[3])
    assert count == len(queries) > 0
    assert 0 <= db_ms <= total_ms


@override_settings(SERVER_TIMING=False)
def test_server_timing_can_be_turned_off(client):
    assert "Server-Timing" not in client.get("/health/live")


def test_each_request_writes_one_log_line_with_its_id(client, caplog):
    with caplog.at_level(logging.INFO, logger="backoffice.request"):
        response = client.get("/api/v1/store", HTTP_X_REQUEST_ID="req-7")
    records = [r for r in caplog.records if r.name == "backoffice.request"]
    assert len(records) == 1
    record = records[0]
    assert record.request_id == "req-7" == response["X-Request-ID"]
    assert (record.method, record.path, record.status) == ("GET", "/api/v1/store", 200)
    assert record.db_queries == 0
    assert record.duration_ms >= 0


def test_json_log_lines_carry_the_request_id(client, capsys):
    config = {**settings.LOGGING, "handlers": {**settings.LOGGING["handlers"]}}
    config["handlers"]["stdout"] = {**config["handlers"]["stdout"], "formatter": "json"}
    logging.config.dictConfig(config)  # binds the handler to the captured stdout
    try:
        client.get("/api/v1/store", HTTP_X_REQUEST_ID="trace-99")
        lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    finally:
        logging.config.dictConfig(settings.LOGGING)
    request_lines = [line for line in lines if line["logger"] == "backoffice.request"]
    assert len(request_lines) == 1
    line = request_lines[0]
    assert line["request_id"] == "trace-99"
    assert line["level"] == "INFO"
    assert line["status"] == 200
    assert re.fullmatch(r"GET /api/v1/store 200 in [\d.]+ ms \(0 queries\)", line["message"])
    assert "time" in line


def test_log_lines_outside_a_request_say_so(caplog):
    with caplog.at_level(logging.INFO):
        logging.getLogger("backoffice.test").info("from a job")
    assert caplog.records[-1].request_id == "-"
