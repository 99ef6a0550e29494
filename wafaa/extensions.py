"""The extension objects, created unbound; `create_app` binds them to an app.

The rate limiter is created per app, in wafaa.ratelimit.
"""

import flask_smorest
from flask_cors import CORS
from flask_jwt_extended import JWTManager
from flask_migrate import Migrate

from wafaa.models.base import db
from wafaa.openapi import ResponseHeadersPlugin
from wafaa.schemas.common import ErrorSchema


class Api(flask_smorest.Api):
    # Every documented error response uses the one error envelope.
    ERROR_SCHEMA = ErrorSchema


# `db` is created beside the models (wafaa.models.base) and re-exported here.
migrate = Migrate()
jwt = JWTManager()
api = Api(spec_kwargs={"extra_plugins": [ResponseHeadersPlugin()]})
cors = CORS()

__all__ = ["api", "cors", "db", "jwt", "migrate"]
