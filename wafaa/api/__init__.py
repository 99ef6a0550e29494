"""Blueprints of the public API, and the Blueprint helpers they share."""

import functools
from http import HTTPStatus

import flask_smorest
from flask import request

from wafaa.errors import Forbidden, ValidationFailed
from wafaa.permissions import require_manager
from wafaa.security import ACCESS, PUBLIC, REFRESH, current_identity, requires
from wafaa.unit_of_work import transactional

# Either scheme gives the same access token: pasted (bearerAuth) or got by
# logging in through the OAuth 2 password flow (oauth2Password, Swagger UI).
BEARER = [{"bearerAuth": []}, {"oauth2Password": []}]
# Refresh takes the refresh token, not the access token: its own scheme, so that
# a generated client sends the right one.
REFRESH_BEARER = [{"refreshToken": []}]


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint plus the auth requirement and the error responses.

    Every endpoint needs an access token unless it is marked otherwise (enforced by
    wafaa.security at runtime, whatever the documentation says); these decorators
    set the requirement and document it, with its 401, in one place.
    """

    def response(self, status_code, schema=None, **kwargs):
        """flask-smorest's response decorator, with the view's work committed when
        it returns and before the result is rendered (wafaa.unit_of_work)."""
        render = super().response(status_code, schema, **kwargs)
        return lambda view: render(transactional(view))

    def arguments(self, schema, *, location="json", required=True, **kwargs):
        """flask-smorest's arguments decorator, strict where webargs is lenient:
        a required JSON body that is absent is refused (webargs would read it as
        `{}`), and so is a query parameter given twice (webargs would keep the
        first: `page=1&page=x` read as page 1). Both 422, as the document says.

        A schema class is instantiated here, once: webargs would build one (and
        deep-copy its fields) on every request. Schemas hold no state of a load."""
        if isinstance(schema, type):
            schema = schema()
        parse = super().arguments(schema, location=location, required=required, **kwargs)
        if location == "query":
            return lambda view: _checked_first(_single_query_values, parse(view))
        if location == "json" and required:
            return lambda view: _checked_first(_body_present, parse(view))
        return parse

    def errors(self, *statuses: int):
        """Document error responses, each with the one error schema."""

        def decorate(view):
            for status in statuses:
                view = self.alt_response(status, response=HTTPStatus(status).name)(view)
            return view

        return decorate

    def managers_only(self, view=None, *, on_refusal=None):
        """Owners and admins only, decided before the body is read: a viewer gets
        403 whatever it sent, not the details of a 422 for a request it may not
        make at all. (The service checks again, with the rows locked.)
        `on_refusal(actor, refusal)` runs first when a refusal must be recorded."""

        def decorate(func):
            @functools.wraps(func)
            def check_first(*args, **kwargs):
                actor = current_identity().admin
                try:
                    require_manager(actor)
                except Forbidden as refusal:
                    if on_refusal is not None:
                        on_refusal(actor, refusal)
                    raise
                return func(*args, **kwargs)

            return self.errors(403)(check_first)

        return decorate(view) if view is not None else decorate

    def public(self, view):
        view = self.doc(security=[])(view)
        return requires(PUBLIC)(view)

    def authenticated(self, view=None, *, refresh: bool = False):
        def decorate(func):
            func = self.errors(401, 429, 503)(func)
            func = self.doc(security=REFRESH_BEARER if refresh else BEARER)(func)
            return requires(REFRESH if refresh else ACCESS)(func)

        return decorate(view) if view is not None else decorate


def _checked_first(check, view):
    @functools.wraps(view)
    def checked(*args, **kwargs):
        check()
        return view(*args, **kwargs)

    return checked


def _single_query_values() -> None:
    repeated = sorted(key for key, values in request.args.lists() if len(values) > 1)
    if repeated:
        raise ValidationFailed(details={"query": {key: ["Give this parameter once."] for key in repeated}})


def _body_present() -> None:
    # wafaa.http_guards has already refused a body that is not JSON; this is the
    # request that has none at all.
    if not request.get_data(cache=True):
        raise ValidationFailed("A JSON body is required.", details={"json": {"_schema": ["A JSON body is required."]}})


def register(api) -> None:
    from wafaa.api import auth, system, tenants

    for module in (system, auth, tenants):
        api.register_blueprint(module.blp)
