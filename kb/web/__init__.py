"""The web layer: thin blueprints over the domain modules, and what every request shares.

* `security`: standard headers on every response, Secure cookies, proxy trust, CSRF, safe `next` addresses.
* `logs`: secrets kept out of log lines.
* `login`: who is asking (session cookie or API token) and the checks that send visitors to sign in.
* `context`: the request's database session, the clock, JSON helpers, template globals.
* `errors`: domain and HTTP errors as a status and a human message.
* `forms`: kind-driven form parsing for the editor.
* Blueprints, each `bp` with a template folder of the same name: auth, wiki, api, admin, search, tours, timeline,
  curate.
"""
from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from kb.web import admin, api, auth, context, curate, errors, login, logs, search, security, timeline, tours, wiki

    for module in (security, logs, context, login, errors):
        module.init_app(app)
    for blueprint in (auth, wiki, api, admin, search, tours, timeline, curate):
        app.register_blueprint(blueprint.bp)
