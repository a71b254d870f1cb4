"""Security that applies to every response: the standard headers (added by a small WSGI middleware, so HTML, JSON,
error and static responses all get them), Secure cookies over HTTPS, proxy trust, CSRF on every write that is not
made with an API token, and the check that a `next` address stays on this site."""
from __future__ import annotations

from urllib.parse import unquote, urlsplit

from flask import Flask, current_app, request
from flask_wtf.csrf import CSRFProtect

from kb.web.context import WRITE_METHODS, bearer_token

csrf = CSRFProtect()

# No inline script or style anywhere: templates link files under /static. Images come from this site only (no CDN,
# and no tracking pixels in page text).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
HSTS = "max-age=31536000"


class SecurityMiddleware:
    """Adds the security headers to every response that leaves the app, whatever produced it, and marks cookies
    Secure when the request came over HTTPS (directly, or through a proxy trusted with KB_PROXY_FIX)."""

    def __init__(self, wsgi_app, headers: dict[str, str] | None = None):
        self.wsgi_app = wsgi_app
        self.headers = dict(headers or SECURITY_HEADERS)

    def __call__(self, environ, start_response):
        https = environ.get("wsgi.url_scheme") == "https"
        static = environ.get("PATH_INFO", "").startswith("/static/")

        def start(status, headers, exc_info=None):
            present = {k.lower() for k, _ in headers}
            out = []
            for k, v in headers:
                if https and k.lower() == "set-cookie" and "; secure" not in v.lower():
                    v = v + "; Secure"
                out.append((k, v))
            out.extend((k, v) for k, v in self.headers.items() if k.lower() not in present)
            if https and "strict-transport-security" not in present:
                out.append(("Strict-Transport-Security", HSTS))
            if not static and "cache-control" not in present:
                # Pages differ by who is signed in; no shared cache or back button should keep them.
                out.append(("Cache-Control", "no-store"))
            return start_response(status, out, exc_info)

        return self.wsgi_app(environ, start)


def is_safe_next(target: str | None) -> bool:
    """Only a path on this site: no scheme, no host, no backslash tricks, also after percent-decoding."""
    if not target or not isinstance(target, str) or len(target) > 2000:
        return False
    for candidate in {target, unquote(target), unquote(unquote(target))}:
        if not candidate.startswith("/") or candidate.startswith("//") or "\\" in candidate:
            return False
        if any(ord(c) < 32 for c in candidate):
            return False
        parts = urlsplit(candidate)
        if parts.scheme or parts.netloc:
            return False
    return True


def init_app(app: Flask) -> None:
    """Headers middleware, then proxy trust (KB_PROXY_FIX=N trusts N proxies' X-Forwarded-* headers), then CSRF."""
    app.wsgi_app = SecurityMiddleware(app.wsgi_app)
    proxies = app.config["PROXY_FIX"]
    if proxies > 0:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies, x_port=proxies)
    csrf.init_app(app)

    @app.before_request
    def _csrf():
        if (request.method in WRITE_METHODS and bearer_token() is None
                and current_app.config.get("WTF_CSRF_ENABLED", True)):
            csrf.protect()
