"""Cross-origin access for the browser apps named in CORS_ORIGINS (flask-cors)."""

from __future__ import annotations

from flask import Flask, request

from wafaa.extensions import cors

# What a browser script may read of a response beyond the CORS-safelisted headers.
EXPOSED_HEADERS = (
    "X-Request-ID",
    "Location",  # of what a 201 created
    "ETag",  # for If-Match (wafaa.etags)
    "Retry-After",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
)


def init_app(app: Flask) -> None:
    cors.init_app(
        app,
        origins=app.config["CORS_ORIGINS"],
        supports_credentials=False,
        # CORS headers only answer a request that names its Origin (a browser's):
        # flask-cors would otherwise send every allowed origin to every client,
        # one Access-Control-Allow-Origin header each, which no browser accepts.
        always_send=False,
        expose_headers=list(EXPOSED_HEADERS),
        max_age=600,
    )
    _only_for_cross_origin_requests(app)


def _only_for_cross_origin_requests(app: Flask) -> None:
    """With `always_send=False`, flask-cors adds nothing to a response whose
    request has no Origin header (an API client's, a server's, a probe's), but
    it still matched the path against its resources on every request: its hook
    now runs only when there is an Origin to answer (preflights carry one too)."""
    hooks = app.after_request_funcs[None]
    found = [index for index, hook in enumerate(hooks) if hook.__qualname__.endswith("cors_after_request")]
    if len(found) != 1:
        raise RuntimeError("flask-cors' after-request hook was not found: its registration changed")
    hook = hooks[found[0]]
    hooks[found[0]] = lambda response: hook(response) if "HTTP_ORIGIN" in request.environ else response
