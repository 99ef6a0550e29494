"""Swagger UI's assets, served by the app itself so /docs works with no internet."""

from importlib.resources import files

from flask import Blueprint, Flask, send_from_directory
from werkzeug.exceptions import NotFound

ASSETS = str(files("swagger_ui").joinpath("static"))
# The files flask-smorest's Swagger UI page loads; nothing else is served.
ALLOWED = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"})

assets = Blueprint("docs-assets", __name__, url_prefix="/docs/assets")


@assets.route("/<path:filename>")
def asset(filename: str):
    if filename not in ALLOWED:
        raise NotFound()
    return send_from_directory(ASSETS, filename, max_age=86400)


def init_app(app: Flask) -> None:
    app.register_blueprint(assets)
