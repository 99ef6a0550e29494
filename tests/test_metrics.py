"""GET /metrics: Prometheus text, the same totals from any worker, not public."""

from __future__ import annotations

import re

import pytest
import requests

from tests.servers import GunicornServer
from tests.support import PASSWORD, error_of

LOGIN = "/api/v1/auth/login"
ME = "/api/v1/tenants/me"


def samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value, from the text format."""
    found = {}
    for line in text.splitlines():
        match = re.match(r"^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) ([-+\d.eE]+|NaN)$", line)
        if match:
            found[match.group(1)] = float(match.group(2))
    return found


def value(found: dict[str, float], name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    total = 0.0
    for key, number in found.items():
        base, _, rest = key.partition("{")
        if base != name:
            continue
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if all(pairs.get(k) == v for k, v in labels.items()):
            total += number
    return total


def test_metrics_are_for_the_operator_only(make_app):
    app = make_app(METRICS_TOKEN="a-scrape-token-of-this-test-0123456789")
    client = app.test_client()
    local = client.get("/metrics")  # the test client's address is 127.0.0.1
    assert local.status_code == 200 and local.mimetype == "text/plain"
    outside = {"REMOTE_ADDR": "203.0.113.9"}
    refused = client.get("/metrics", environ_base=outside)
    assert refused.status_code == 404 and error_of(refused)["code"] == "not_found"
    wrong = client.get("/metrics", environ_base=outside, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 404
    scraped = client.get(
        "/metrics", environ_base=outside, headers={"Authorization": "Bearer a-scrape-token-of-this-test-0123456789"}
    )
    assert scraped.status_code == 200 and b"wafaa_http_requests_total" in scraped.data
    nobody = make_app(METRICS_ALLOWED_NETWORKS="[]", METRICS_TOKEN="").test_client()
    assert nobody.get("/metrics").status_code == 404
    assert "/metrics" not in client.get("/openapi.json").get_json()["paths"]


@pytest.mark.gunicorn
def test_every_worker_reports_the_totals_of_all_after_real_traffic(factory):
    world = factory.world()
    with GunicornServer(workers=2, threads=4) as server:
        before = samples(requests.get(f"{server.url}/metrics", timeout=10).text)
        session = requests.Session()
        token = None
        for _ in range(3):
            answer = session.post(f"{server.url}{LOGIN}", json={"email": world.owner.email, "password": PASSWORD})
            assert answer.status_code == 200
            token = answer.json()["access_token"]
        for _ in range(2):
            wrong = session.post(
                f"{server.url}{LOGIN}", json={"email": world.owner.email, "password": "wrong-pass-123"}
            )
            assert wrong.status_code == 401
        headers = {"Authorization": f"Bearer {token}"}
        for _ in range(10):
            assert requests.get(f"{server.url}{ME}", headers=headers, timeout=10).status_code == 200  # new connections
        assert session.patch(f"{server.url}{ME}", headers=headers, json={"name": "Metered"}).status_code == 200
        # Scraped several times, over new connections: whichever worker answers,
        # the totals are those of both.
        scrapes = [samples(requests.get(f"{server.url}/metrics", timeout=10).text) for _ in range(4)]
    for after in scrapes:

        def moved(name, after=after, **labels):
            return value(after, name, **labels) - value(before, name, **labels)

        assert moved("wafaa_logins_total", outcome="success") == 3
        assert moved("wafaa_logins_total", outcome="failure") == 2
        assert moved("wafaa_http_requests_total", endpoint="tenants.CurrentTenant", method="GET", status="200") == 10
        assert moved("wafaa_http_request_duration_seconds_count", endpoint="tenants.CurrentTenant", method="GET") == 10
        assert moved("wafaa_audit_rows_total", action="tenant.updated") == 1
        assert "wafaa_db_pool_connections_in_use" in {k.partition("{")[0] for k in after}
