"""The framework owns a request's transaction (wafaa.unit_of_work): views never
commit, the request commits once when its view returns and rolls back when it
raises, and a request that would end with unsaved changes fails loudly."""

from __future__ import annotations

import uuid

import pytest
from flask import jsonify
from flask.views import MethodView
from flask_jwt_extended import get_jwt, get_jwt_header, get_jwt_identity

from tests.support import ApiClient, Factory
from wafaa.api import Blueprint
from wafaa.errors import Conflict
from wafaa.extensions import db
from wafaa.models import AdminRole, TenantAdmin
from wafaa.schemas.admin import AdminSchema


def _new_viewer(email: str) -> TenantAdmin:
    # No commit anywhere: that is the point.
    admin = TenantAdmin(
        id=uuid.uuid4(), email=email, full_name="Made By A Test View", role=AdminRole.VIEWER, password_hash="x" * 60
    )
    db.session.add(admin)
    return admin


@pytest.fixture
def uow_app(make_app):
    app = make_app()
    blp = Blueprint("uow", __name__, url_prefix="/test-only/uow")

    @blp.route("/created")
    class Created(MethodView):
        @blp.authenticated
        @blp.response(201, AdminSchema)
        def post(self):
            return _new_viewer("created@uow.test")

    @blp.route("/refused")
    class Refused(MethodView):
        @blp.authenticated
        @blp.response(201, AdminSchema)
        def post(self):
            _new_viewer("refused@uow.test")
            db.session.flush()
            raise Conflict("refused after writing")

    @blp.route("/refused-and-recorded")
    class RefusedAndRecorded(MethodView):
        @blp.authenticated
        @blp.response(201, AdminSchema)
        def post(self):
            _new_viewer("recorded@uow.test")
            raise Conflict("refused, but what was done stands", keep_changes=True)

    def plain_view():
        _new_viewer("plain@uow.test")
        return jsonify({"claims": get_jwt()["sid"], "identity": get_jwt_identity(), "alg": get_jwt_header()["alg"]})

    def unsaved_after_the_view(response):
        # A hook that changes data after the request committed: nothing commits it.
        if response.status_code < 400 and "unsaved" in (response.headers.get("X-Test") or ""):
            _new_viewer("late@uow.test")
        return response

    def late_view():
        response = jsonify({"ok": True})
        response.headers["X-Test"] = "unsaved"
        return response

    app.register_blueprint(blp)  # not documented: kept out of the API's spec
    app.add_url_rule("/test-only/uow/plain", "uow_plain", plain_view, methods=["POST"])
    app.add_url_rule("/test-only/uow/late", "uow_late", late_view, methods=["POST"])
    app.after_request(unsaved_after_the_view)
    return app


@pytest.fixture
def uow(uow_app) -> ApiClient:
    return ApiClient(uow_app.test_client(), Factory(uow_app))


def _emails(raw_db) -> set[str]:
    return {row[0] for row in raw_db.execute("SELECT email FROM tenant_admins WHERE email LIKE '%%@uow.test'")}


def _created_rows(raw_db, email: str) -> int:
    return raw_db.execute(
        "SELECT count(*) FROM audit_logs WHERE action = 'admin.created' AND details -> 'after' ->> 'email' = %s",
        (email,),
    ).fetchone()[0]


def test_a_view_that_returns_is_committed_before_its_result_is_rendered(uow, factory, raw_db):
    world = factory.world()
    response = uow.post("/test-only/uow/created", world.owner)
    assert response.status_code == 201
    body = response.get_json()
    # Rendered after the commit's flush: the server defaults are there.
    assert body["id"] and body["created_at"] and body["updated_at"]
    assert _emails(raw_db) == {"created@uow.test"}
    assert _created_rows(raw_db, "created@uow.test") == 1


def test_a_view_that_raises_commits_nothing(uow, factory, raw_db):
    world = factory.world()
    response = uow.post("/test-only/uow/refused", world.owner)
    assert response.status_code == 409
    assert _emails(raw_db) == set()
    assert _created_rows(raw_db, "refused@uow.test") == 0


def test_a_refusal_that_keeps_its_changes_commits_them(uow, factory, raw_db):
    world = factory.world()
    assert uow.post("/test-only/uow/refused-and-recorded", world.owner).status_code == 409
    assert _emails(raw_db) == {"recorded@uow.test"}


def test_a_plain_flask_view_is_a_unit_of_work_too_and_sees_flask_jwt_extended(uow, factory, raw_db):
    world = factory.world()
    token = uow.login(world.owner)["access_token"]
    # Twice: the second request is answered from the verified-token cache, where
    # the library's own API must still work (it raised a 500 once).
    for _ in range(2):
        response = uow.post("/test-only/uow/plain", token=token)
        assert response.status_code == 200, response.get_json()
        assert response.get_json()["identity"] == str(world.owner.id)
        assert response.get_json()["alg"] == "HS256"
        assert _emails(raw_db) == {"plain@uow.test"}
        raw_db.execute("DELETE FROM audit_logs WHERE details -> 'after' ->> 'email' = 'plain@uow.test'")
        raw_db.execute("DELETE FROM tenant_admins WHERE email = 'plain@uow.test'")
        raw_db.execute("DELETE FROM admin_emails WHERE email = 'plain@uow.test'")  # its registration


def test_changes_left_unsaved_at_the_end_of_a_request_fail_it_loudly(uow, factory, raw_db):
    world = factory.world()
    response = uow.post("/test-only/uow/late", world.owner)
    assert response.status_code == 500
    assert response.get_json()["error"]["code"] == "internal_error"
    assert _emails(raw_db) == set()
