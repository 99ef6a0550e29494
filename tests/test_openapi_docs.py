"""The OpenAPI document describes every endpoint truthfully, and /docs works offline.

The document is checked against the app itself: every route of the URL map is
documented, every operation documented as protected really answers 401 without a
token, and every public one really does not.
"""

from __future__ import annotations

import re
import uuid
from html.parser import HTMLParser

import pytest
from flask import url_for

from tests.support import error_of

PUBLIC_OPERATIONS = {
    ("post", "/api/v1/auth/login"),
    ("post", "/api/v1/auth/token"),
    ("get", "/health"),
    ("get", "/livez"),
    ("get", "/readyz"),
    ("get", "/api/v1/system/info"),
}
EXPECTED_OPERATIONS = PUBLIC_OPERATIONS | {
    ("post", "/api/v1/auth/refresh"),
    ("post", "/api/v1/auth/logout"),
    ("get", "/api/v1/auth/sessions"),
    ("delete", "/api/v1/auth/sessions/{session_id}"),
    ("get", "/api/v1/tenants/me"),
    ("patch", "/api/v1/tenants/me"),
    ("get", "/api/v1/tenants/me/admins"),
    ("post", "/api/v1/tenants/me/admins"),
    ("get", "/api/v1/tenants/me/admins/{admin_id}"),
    ("patch", "/api/v1/tenants/me/admins/{admin_id}"),
    ("post", "/api/v1/tenants/me/admins/{admin_id}/deactivate"),
    ("get", "/api/v1/tenants/me/audit-logs"),
}
ACCESS_SCHEMES = [{"bearerAuth": []}, {"oauth2Password": []}]
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
# Routes that serve the documentation itself rather than the API.
DOCS_ENDPOINTS = {"api-docs.openapi_json", "api-docs.openapi_swagger_ui", "docs-assets.asset"}


@pytest.fixture(scope="module")
def spec(app) -> dict:
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    return response.get_json()


def operations(spec: dict) -> dict[tuple[str, str], dict]:
    return {
        (method, path): operation
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    }


def resolve(spec: dict, node: dict) -> dict:
    """Follow local $refs (#/components/...) until a concrete object."""
    seen = set()
    while "$ref" in node:
        ref = node["$ref"]
        assert ref.startswith("#/"), ref
        assert ref not in seen, f"$ref cycle at {ref}"
        seen.add(ref)
        target = spec
        for part in ref[2:].split("/"):
            target = target[part]
        node = target
    return node


def json_schema_of(spec: dict, response: dict) -> dict | None:
    response = resolve(spec, response)
    schema = response.get("content", {}).get("application/json", {}).get("schema")
    return resolve(spec, schema) if schema is not None else None


def is_error_status(status: str) -> bool:
    return status == "default" or status[0] in "45"


# --- the document ---------------------------------------------------------------------


def test_openapi_document_is_openapi_3_with_a_bearer_jwt_scheme(spec):
    assert re.fullmatch(r"3\.\d+\.\d+", spec["openapi"])
    assert spec["info"]["title"]
    assert spec["info"]["version"]
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }


def test_the_oauth2_password_flow_points_at_the_token_endpoint(app, spec):
    # What Swagger UI's Authorize dialog logs in with (tests/test_swagger_ui_login.py).
    scheme = spec["components"]["securitySchemes"]["oauth2Password"]
    assert scheme["type"] == "oauth2"
    assert set(scheme["flows"]) == {"password"}
    token_url = scheme["flows"]["password"]["tokenUrl"]
    with app.test_request_context():
        assert token_url == url_for("auth.Token")
    body = operations(spec)[("post", token_url)]["requestBody"]["content"]
    assert set(body) == {"application/x-www-form-urlencoded"}
    schema = resolve(spec, body["application/x-www-form-urlencoded"]["schema"])
    assert {"grant_type", "username", "password"} <= set(schema["required"])


def test_every_endpoint_is_documented(spec):
    documented = set(operations(spec))
    missing = EXPECTED_OPERATIONS - documented
    assert not missing, f"undocumented operations: {sorted(missing)}"


def test_every_route_of_the_app_is_documented(app, spec):
    # Whatever the app serves (beyond the docs themselves) appears in the document,
    # so an endpoint added later cannot stay undocumented.
    documented = set(operations(spec))
    for rule in app.url_map.iter_rules():
        if rule.endpoint in DOCS_ENDPOINTS or rule.endpoint == "metrics":
            continue  # /metrics is the operator's Prometheus scrape, not the API (README)
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (method.lower(), path) in documented, f"{method} {path} is served but not documented"


def test_path_parameters_are_documented_as_uuids(spec):
    for path in (
        "/api/v1/auth/sessions/{session_id}",
        "/api/v1/tenants/me/admins/{admin_id}",
        "/api/v1/tenants/me/admins/{admin_id}/deactivate",
    ):
        name = re.search(r"\{(\w+)\}", path).group(1)
        item = spec["paths"][path]
        parameters = list(item.get("parameters", []))
        for method in HTTP_METHODS & set(item):
            parameters += item[method].get("parameters", [])
        declared = [resolve(spec, p) for p in parameters if resolve(spec, p).get("in") == "path"]
        assert [p["name"] for p in declared] == [name], path
        assert declared[0]["required"] is True
        assert declared[0]["schema"] == {"type": "string", "format": "uuid"}


def test_public_operations_declare_no_security(spec):
    ops = operations(spec)
    for key in PUBLIC_OPERATIONS:
        assert ops[key].get("security") == [], key


def test_protected_operations_declare_bearer_auth_and_a_401(spec):
    for key, operation in operations(spec).items():
        if key in PUBLIC_OPERATIONS:
            continue
        # An access token, pasted or got through the OAuth 2 password flow.
        schemes = [{"refreshToken": []}] if key == ("post", "/api/v1/auth/refresh") else ACCESS_SCHEMES
        assert operation.get("security") == schemes, key
        assert "401" in operation["responses"], key


def test_no_global_security_makes_public_endpoints_look_protected_or_vice_versa(spec):
    # Each operation states its own requirement; a top-level default would be
    # silently inherited by anything that forgot to.
    for key, operation in operations(spec).items():
        assert "security" in operation, key


def test_every_operation_has_a_summary(spec):
    for key, operation in operations(spec).items():
        assert operation.get("summary"), key


def test_every_operation_documents_a_success_response_with_a_schema(spec):
    for key, operation in operations(spec).items():
        successes = {status: r for status, r in operation["responses"].items() if status.startswith("2")}
        assert successes, f"{key} documents no success response"
        for status, response in successes.items():
            if status == "204":
                assert json_schema_of(spec, response) is None, key
                continue
            schema = json_schema_of(spec, response)
            assert schema is not None, f"{key} {status} has no JSON schema"
            assert schema.get("properties") or schema.get("items"), f"{key} {status} schema is empty"


def test_error_responses_use_the_error_envelope(spec):
    for key, operation in operations(spec).items():
        errors = {status: r for status, r in operation["responses"].items() if is_error_status(status)}
        assert errors, key
        for status, response in errors.items():
            if key in {("get", "/health"), ("get", "/readyz")} and status == "503":
                continue  # the probes answer 503 with their own (check) body
            schema = json_schema_of(spec, response)
            assert schema is not None, f"{key} {status} has no JSON schema"
            assert set(schema["properties"]) == {"error"}, f"{key} {status}"
            assert "error" in schema.get("required", []), f"{key} {status}"
            body = resolve(spec, schema["properties"]["error"])
            assert set(body["properties"]) == {"status", "code", "message", "details", "request_id"}, key
            assert set(body["required"]) == {"status", "code", "message", "details", "request_id"}, key


def test_operations_that_take_input_document_422(spec):
    for key, operation in operations(spec).items():
        takes_query = any(resolve(spec, p).get("in") == "query" for p in operation.get("parameters", []))
        # The OAuth token endpoint's form is refused as RFC 6749 says: 400.
        takes_form = "application/x-www-form-urlencoded" in operation.get("requestBody", {}).get("content", {})
        if "requestBody" in operation or takes_query:
            assert ("400" if takes_form else "422") in operation["responses"], key


def test_health_503_documents_the_health_body(spec):
    responses = operations(spec)[("get", "/health")]["responses"]
    assert json_schema_of(spec, responses["503"]) == json_schema_of(spec, responses["200"])


# --- the document agrees with the running app ---------------------------------------------


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)


def test_operations_documented_as_protected_refuse_a_request_without_token(client, spec):
    for (method, path), _ in sorted(operations(spec).items()):
        if (method, path) in PUBLIC_OPERATIONS:
            continue
        kwargs = {"json": {}} if method in ("post", "patch") else {}
        response = client.open(_concrete(path), method=method.upper(), **kwargs)
        assert response.status_code == 401, (method, path, response.get_json())
        assert error_of(response)["code"] == "token_missing"


def test_operations_documented_as_public_need_no_token(client, spec):
    for method, path in PUBLIC_OPERATIONS:
        kwargs = {}
        if path.endswith("/token"):
            kwargs = {"data": {"grant_type": "password", "username": "nobody@example.test", "password": "not-it"}}
        elif method == "post":
            kwargs = {"json": {"email": "nobody@example.test", "password": "not-the-password"}}
        response = client.open(path, method=method.upper(), **kwargs)
        code = (response.get_json() or {}).get("error", {}).get("code")
        assert code != "token_missing", (method, path)


# --- /docs --------------------------------------------------------------------------------


class _AssetCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


@pytest.fixture(scope="module")
def docs_html(app) -> str:
    response = app.test_client().get("/docs")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    return response.get_data(as_text=True)


def test_docs_page_has_no_external_address_at_all(docs_html):
    assert "http://" not in docs_html
    assert "https://" not in docs_html
    assert "//cdn" not in docs_html
    assert not re.search(r"""(src|href)\s*=\s*["']//""", docs_html)  # protocol-relative


def test_docs_page_loads_its_assets_from_docs_assets(docs_html):
    collector = _AssetCollector()
    collector.feed(docs_html)
    assert collector.urls, "the docs page references no assets"
    for url in collector.urls:
        assert url.startswith("/docs/assets/"), url
    joined = " ".join(collector.urls)
    assert "swagger-ui-bundle.js" in joined
    assert "swagger-ui.css" in joined


def test_docs_page_points_swagger_ui_at_the_local_spec(docs_html):
    assert re.search(r"""url:\s*["']/openapi\.json["']""", docs_html)


def test_every_asset_of_the_docs_page_is_served_with_its_content_type(client, docs_html):
    collector = _AssetCollector()
    collector.feed(docs_html)
    expected_types = {".css": "text/css", ".js": ("text/javascript", "application/javascript")}
    for url in collector.urls:
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.get_data(), url
        suffix = url[url.rfind(".") :]
        content_type = response.headers["Content-Type"]
        assert content_type.startswith(expected_types[suffix]), (url, content_type)
        response.close()


@pytest.mark.parametrize(
    "name",
    [
        "nope.js",
        "swagger-initializer.js",  # exists in the package, but the page does not use it
        "index.css",
        "oauth2-redirect.html",
        "LICENSE",
        "../__init__.py",
        "..%2F__init__.py",
        "%2e%2e/%2e%2e/config.py",
        "swagger-ui-bundle.js/../swagger-ui.css",
    ],
)
def test_unknown_docs_asset_is_404(client, name):
    response = client.get(f"/docs/assets/{name}")
    assert response.status_code == 404
    assert error_of(response)["code"] == "not_found"


# --- a document that generates a good client (issue 10, item 7) ---------------------------


def test_operation_ids_are_present_and_unique(spec):
    ids = [operation.get("operationId") for operation in operations(spec).values()]
    assert all(ids), [key for key, operation in operations(spec).items() if not operation.get("operationId")]
    assert len(set(ids)) == len(ids)


def test_the_document_describes_itself_and_names_its_server(spec):
    assert spec["servers"] == [{"url": "/", "description": "This server"}]
    assert "Bearer" in spec["info"]["description"] and spec["info"]["contact"]["name"]
    assert "PaginationMetadata" not in spec["components"]["schemas"]  # registered by flask-smorest, unused


def _headers_of(spec: dict, response: dict) -> set[str]:
    return set(resolve(spec, response).get("headers", {}))


def test_every_response_documents_x_request_id_and_limited_ones_the_rate_limit_headers(spec):
    for key, operation in operations(spec).items():
        limited = "429" in operation["responses"]
        for status, response in operation["responses"].items():
            headers = _headers_of(spec, response)
            assert "X-Request-ID" in headers, (key, status)
            if limited and status.startswith("2"):
                assert {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} <= headers, (key, status)
            if status == "201":
                assert "Location" in headers, key
            if status == "429":
                assert {"Retry-After", "RateLimit-Reset"} <= headers, key
            if status == "401":
                assert "WWW-Authenticate" in headers, key


def test_operations_with_a_body_document_400_413_and_415(spec):
    with_body = [operation for operation in operations(spec).values() if "requestBody" in operation]
    assert len(with_body) >= 6
    for operation in with_body:
        # A JSON body's invalid fields are 422; a form's (the OAuth token
        # endpoint's) are 400 invalid_request, as RFC 6749 says.
        invalid = "422" if "application/json" in operation["requestBody"]["content"] else "400"
        assert {"400", "413", "415", invalid} <= set(operation["responses"]), operation["operationId"]


def test_every_error_response_has_an_example_in_the_error_format(spec):
    for name, response in spec["components"]["responses"].items():
        example = response["content"]["application/json"]["example"]
        assert set(example) == {"error"}, name
        assert set(example["error"]) == {"status", "code", "message", "details", "request_id"}, name


def test_every_enum_states_its_type(spec):
    found = []

    def walk(node, where):
        if isinstance(node, dict):
            if "enum" in node:
                found.append(where)
                assert node.get("type") == "string", where
            for name, child in node.items():
                walk(child, f"{where}/{name}")
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, f"{where}/{index}")

    walk(spec, "#")
    assert len(found) >= 5  # roles, tiers, audit actions, probe statuses...


def test_documented_headers_are_what_the_service_sends(api, factory):
    owner = factory.world().owner
    token = api.login(owner)["access_token"]
    created = api.post(
        "/api/v1/tenants/me/admins",
        token=token,
        json={"email": "new@headers.test", "full_name": "New", "role": "viewer", "password": "a long password here"},
    )
    assert created.status_code == 201
    assert created.headers["Location"].endswith(created.get_json()["id"])
    for name in ("X-Request-ID", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
        assert name in created.headers, name
    assert int(created.headers["RateLimit-Reset"]) >= 0
    for status, response in (
        (415, api.patch("/api/v1/tenants/me", token=token, data="x", content_type="text/plain")),
        (400, api.patch("/api/v1/tenants/me", token=token, data="{", content_type="application/json")),
    ):
        assert response.status_code == status
        assert response.headers["X-Request-ID"] and error_of(response)["status"] == status
