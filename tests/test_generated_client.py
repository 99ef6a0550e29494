"""Issue 10, item 7: a client generated from the served document is enough.

openapi-python-client generates a package from the /openapi.json a real gunicorn
serves; the test imports it and drives the whole flow through it alone (login,
tenants/me, settings, admins create/list/get/update/deactivate, the audit log,
sessions, refresh, logout), answers and errors as the generated types.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.servers import GunicornServer

GENERATOR = Path(sys.executable).with_name("openapi-python-client")
# No formatting pass (post_hooks): the generated code is imported, not read.
CONFIG = "post_hooks: []\nproject_name_override: wafaa_client\npackage_name_override: wafaa_client\n"


def generate(server: GunicornServer, where: Path):
    document = where / "openapi.json"
    document.write_bytes(httpx.get(f"{server.url}/openapi.json").content)
    (where / "config.yaml").write_text(CONFIG)
    result = subprocess.run(
        [str(GENERATOR), "generate", f"--path={document}", f"--config={where / 'config.yaml'}", "--meta=none"]
        + [f"--output-path={where / 'wafaa_client'}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # The generator warns (and skips what it cannot type) rather than failing.
    assert "warning" not in output.lower(), output
    sys.path.insert(0, str(where))
    return importlib.import_module("wafaa_client")


@pytest.fixture
def server():
    with GunicornServer(workers=1, threads=4) as running:
        yield running


@pytest.fixture
def generated(server, tmp_path):
    yield generate(server, tmp_path)
    sys.path.remove(str(tmp_path))
    for name in [name for name in sys.modules if name == "wafaa_client" or name.startswith("wafaa_client.")]:
        del sys.modules[name]


@pytest.fixture
def connect(server, generated):
    """connect(token=None): a generated client (authenticated with `token`), closed after the test."""
    with ExitStack() as clients:

        def make(token: str | None = None):
            options = {"base_url": server.url, "raise_on_unexpected_status": True}
            if token is None:
                return clients.enter_context(generated.Client(**options))
            return clients.enter_context(generated.AuthenticatedClient(token=token, **options))

        yield make


def test_the_generated_client_drives_the_whole_flow(connect, factory):
    from wafaa_client.api.auth import list_sessions, login, logout, refresh_tokens
    from wafaa_client.api.tenants import (
        create_admin,
        deactivate_admin,
        get_admin,
        get_tenant,
        list_admins,
        list_audit_logs,
        update_admin,
        update_tenant,
    )
    from wafaa_client.models import (
        Admin,
        AdminCreate,
        AdminCreateRole,
        AdminPage,
        AdminUpdate,
        AdminUpdateRole,
        AuditLogPage,
        Error,
        Login,
        RefreshedTokens,
        Tenant,
        TenantUpdate,
        TenantUpdateSettings,
        TokenPair,
    )

    world = factory.world()
    anonymous = connect()
    transcript = []

    def step(text: str) -> None:
        transcript.append(text)

    # Login: a typed error for bad credentials, a token pair for good ones.
    refused = login.sync(client=anonymous, body=Login(email=world.owner.email, password="not the password"))
    assert isinstance(refused, Error) and refused.error.code == "invalid_credentials" and refused.error.status == 401
    tokens = login.sync(client=anonymous, body=Login(email=world.owner.email, password=world.owner.password))
    assert isinstance(tokens, TokenPair) and tokens.token_type == "Bearer"
    step(f"login: 401 {refused.error.code}, then 200 TokenPair (expires_in={tokens.expires_in})")
    owner = connect(tokens.access_token)

    # The tenant, and a settings change guarded by its ETag.
    read = get_tenant.sync_detailed(client=owner)
    assert isinstance(read.parsed, Tenant) and read.parsed.id == world.tenant.id
    etag = read.headers["ETag"]
    settings = TenantUpdateSettings.from_dict({"theme": "dark", "locale": "ar"})
    changed = update_tenant.sync(client=owner, body=TenantUpdate(settings=settings), if_match=etag)
    assert isinstance(changed, Tenant) and changed.settings.to_dict() == {"theme": "dark", "locale": "ar"}
    stale = update_tenant.sync(client=owner, body=TenantUpdate(name="Too Late"), if_match=etag)
    assert isinstance(stale, Error) and stale.error.code == "precondition_failed"
    step(f"tenants/me: 200 Tenant {read.parsed.slug}; settings patch 200; stale If-Match 412 {stale.error.code}")

    # Admins: create (201 + Location), refuse a bad one, list, get, update, deactivate.
    new = AdminCreate(email="nadia@client.test", full_name="Nadia", role=AdminCreateRole.VIEWER, password="x" * 16)
    created = create_admin.sync_detailed(client=owner, body=new)
    assert created.status_code == 201 and isinstance(created.parsed, Admin)
    admin = created.parsed
    assert created.headers["Location"].endswith(f"/admins/{admin.id}")
    invalid = create_admin.sync(
        client=owner, body=AdminCreate(email="nobody", full_name="N", role=AdminCreateRole.VIEWER, password="short")
    )
    assert isinstance(invalid, Error) and invalid.error.status == 422
    assert set(invalid.error.details.to_dict()["json"]) == {"email", "password"}
    page = list_admins.sync(client=owner, page_size=10)
    assert isinstance(page, AdminPage) and page.total == 4 and admin.id in {item.id for item in page.items}
    assert get_admin.sync(client=owner, admin_id=admin.id).email == "nadia@client.test"
    renamed = update_admin.sync(
        client=owner, admin_id=admin.id, body=AdminUpdate(full_name="Nadia K", role=AdminUpdateRole.ADMIN)
    )
    assert isinstance(renamed, Admin) and (renamed.full_name, renamed.role.value) == ("Nadia K", "admin")
    deactivated = deactivate_admin.sync(client=owner, admin_id=admin.id)
    assert isinstance(deactivated, Admin) and deactivated.is_active is False
    step(
        f"admins: create 201 (Location {urlsplit(created.headers['Location']).path}), bad body 422 "
        f"{sorted(invalid.error.details.to_dict()['json'])}, list total={page.total}, get, update -> admin, "
        "deactivate -> is_active=false"
    )

    # The audit log, paged by cursor.
    first = list_audit_logs.sync(client=owner, page_size=2)
    assert isinstance(first, AuditLogPage) and len(first.items) == 2 and first.next_cursor
    following = list_audit_logs.sync(client=owner, page_size=50, after=first.next_cursor)
    actions = [entry.action for entry in (*first.items, *following.items)]
    assert {"auth.login", "tenant.updated", "admin.created", "admin.updated", "admin.deactivated"} <= set(actions)
    step(f"audit log: {first.total} entries in {len(actions)} read by cursor, newest first: {actions[:3]}...")

    # A viewer's change is a typed 403.
    viewer_tokens = login.sync(client=anonymous, body=Login(email=world.viewer.email, password=world.viewer.password))
    viewer = connect(viewer_tokens.access_token)
    forbidden = update_tenant.sync(client=viewer, body=TenantUpdate(name="Mine"))
    assert isinstance(forbidden, Error) and forbidden.error.status == 403
    step(f"viewer: settings patch 403 {forbidden.error.code}")

    # Sessions, refresh (with the refresh token, its own scheme), logout.
    sessions = list_sessions.sync(client=owner)
    assert [session.current for session in sessions] == [True]
    with_refresh = connect(tokens.refresh_token)
    refreshed = refresh_tokens.sync(client=with_refresh)
    assert isinstance(refreshed, RefreshedTokens) and refreshed.refresh_token != tokens.refresh_token
    fresh = connect(refreshed.access_token)
    assert isinstance(get_tenant.sync(client=fresh), Tenant)
    assert logout.sync_detailed(client=fresh).status_code == 204
    gone = get_tenant.sync(client=fresh)
    assert isinstance(gone, Error) and gone.error.status == 401
    step(f"sessions: 1 (current); refresh 200 (rotated); logout 204; then 401 {gone.error.code}")

    print("\n".join(transcript))
