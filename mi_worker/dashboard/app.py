"""The Flask application: six read-only pages, server-rendered, no JavaScript.

Flask (with Jinja2 templates and markupsafe escaping) because it is the best-kept small
Python web framework, pure Python on Windows and Python 3.9+, and its templates escape by
default; waitress (server.py) serves it in production. The app never writes: every statement
is a named SELECT from queries.sql on a read-only session (server.open_read_only).
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any, Dict, Optional
from urllib.parse import urlencode

from flask import Flask, Response, g, redirect, render_template, request
from werkzeug.exceptions import HTTPException

from mi_worker import __version__
from mi_worker.dashboard import data, render
from mi_worker.dashboard.auth import COOKIE, Credentials
from mi_worker.dashboard.i18n import LANGS, status_label, translate
from mi_worker.db import Database
from mi_worker.reconcile import yesterday_china

log = logging.getLogger("mi_worker.dashboard")

OVERVIEW_TTL = 10.0  # seconds one overview reading is shown to every viewer
_CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'")


def create_app(db: Database, settings: Any = None, creds: Optional[Credentials] = None
               ) -> Flask:
    """The dashboard bound to one Database (a pool; Flask's threads share it)."""
    app = Flask(__name__)
    app.config["JSON_AS_ASCII"] = False
    creds = creds or Credentials()
    zone = render.display_zone(settings)
    warn_seconds, down_seconds = 30, 60  # as `mi-worker status` and sp_check_sdk_service_status
    # The overview's day window reads every row of the last 24 h (~0.3 s for 33k rows a day):
    # ten screens refreshing every 30 s share one reading per OVERVIEW_TTL seconds.
    cache: Dict[str, Any] = {"at": -1e9, "data": None}
    lock = threading.Lock()

    def overview_data() -> Dict[str, Any]:
        with lock:
            if time.monotonic() - cache["at"] >= OVERVIEW_TTL:
                cache["data"] = data.overview(db, warn_seconds=warn_seconds,
                                              down_seconds=down_seconds,
                                              recon_day=_china_yesterday())
                cache["at"] = time.monotonic()
            return cache["data"]

    @app.before_request
    def _auth() -> Optional[Response]:
        g.lang = _lang()
        if request.endpoint in ("static", "healthz", "favicon") or not creds.configured:
            return None
        offered = request.args.get("token")
        if offered is not None:
            if creds.token_ok(offered):
                args = {k: v for k, v in request.args.items() if k != "token"}
                target = request.path + ("?" + urlencode(args) if args else "")
                resp = redirect(target, code=303)
                resp.set_cookie(COOKIE, offered, httponly=True, samesite="Strict",
                                secure=request.is_secure)
                return resp
            return _denied()
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("bearer ") and creds.token_ok(header[7:].strip()):
            return None
        if creds.token_ok(request.cookies.get(COOKIE)):
            return None
        basic = request.authorization
        if basic is not None and creds.basic_ok(basic.username, basic.password):
            return None
        return _denied()

    def _denied() -> Response:
        resp = Response(translate("title", g.lang) + ": 401 — token or password required\n",
                        status=401, mimetype="text/plain")
        if creds.user:
            resp.headers["WWW-Authenticate"] = 'Basic realm="mi-worker dashboard", charset="UTF-8"'
        return resp

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers["Content-Security-Policy"] = _CSP
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"  # URLs may carry an exact psn_no
        resp.headers["Cache-Control"] = "no-store"
        if request.args.get("lang") in LANGS:
            resp.set_cookie("lang", request.args["lang"], samesite="Strict",
                            max_age=365 * 86400)
        return resp

    @app.errorhandler(Exception)
    def _error(exc: Exception):
        if isinstance(exc, HTTPException):
            return exc
        # A database that is away is a page that says so, never a traceback.
        log.error("dashboard page %s failed: %s: %s", request.path, type(exc).__name__, exc)
        return render_template("error.html", message=f"{type(exc).__name__}"), 503

    @app.context_processor
    def _helpers() -> Dict[str, Any]:
        lang = getattr(g, "lang", "zh")
        return {
            "t": lambda key: translate(key, lang),
            "st": lambda s: status_label(s, lang),
            "tm": lambda v: render.fmt_time(v, zone),
            "ms": render.fmt_ms,
            "lang": lang,
            "zone_name": getattr(zone, "key", None) or "Asia/Shanghai",
            "now_local": render.fmt_time(dt.datetime.now(dt.timezone.utc), zone),
            "version": __version__,
            "other_lang": "en" if lang == "zh" else "zh",
            "lang_url": _lang_url,
        }

    def _lang_url(target: str) -> str:
        args = {k: v for k, v in request.args.items() if k not in ("lang", "token")}
        args["lang"] = target
        return request.path + "?" + urlencode(args)

    @app.route("/favicon.ico")
    def favicon() -> Response:
        return redirect("/static/favicon.svg", code=301)

    @app.route("/healthz")
    def healthz() -> Response:
        return Response("ok\n", mimetype="text/plain")

    @app.route("/")
    def overview():
        o = overview_data()
        lang = g.lang
        legend = {k: translate(k, lang) for k in data.OUTCOMES + ("p50", "p95")}
        now = dt.datetime.now(dt.timezone.utc)
        charts = {}
        for name, tp in o["throughput"].items():
            labels = render.bucket_labels(now, tp["buckets"], tp["bucket_seconds"], zone)
            charts[f"tp_{name}"] = render.stacked_bars(tp["series"], labels,
                                                       translate("throughput", lang), legend)
            charts[f"lat_{name}"] = render.grouped_bars(o["latency"][name],
                                                        translate("latency", lang), legend)
        return render_template("overview.html", o=o, charts=charts, nav="overview")

    @app.route("/requests")
    def requests_list():
        f = data.parse_filter(request.args, zone)
        page = data.requests_page(db, f)
        keep = {k: v for k, v in request.args.items()
                if k not in ("before", "token") and v and k not in f.errors}
        older = None
        if page["next_before"] is not None:
            older = "/requests?" + urlencode({**keep, "before": page["next_before"]})
        newest = "/requests?" + urlencode(keep) if f.before_id else None
        return render_template("requests.html", page=page, f=f, form=request.args, older=older,
                               newest=newest, statuses=data.STATUSES, nav="requests")

    @app.route("/requests/<int:request_id>")
    def request_page(request_id: int):
        d = data.request_detail(db, request_id)
        if d is None:
            return render_template("error.html", message=translate("not_found", g.lang)), 404
        return render_template("request.html", d=d, nav="requests")

    @app.route("/doubtful")
    def doubtful():
        return render_template("doubtful.html", rows=data.doubtful(db), nav="doubtful")

    @app.route("/alerts")
    def alerts():
        return render_template("alerts.html", rows=data.alerts(db), nav="alerts")

    @app.route("/reconciliation")
    def reconciliation():
        return render_template("reconciliation.html", rows=data.reconciliation(db),
                               nav="reconciliation")

    return app


def _lang() -> str:
    asked = request.args.get("lang") or request.cookies.get("lang")
    if asked in LANGS:
        return asked
    return "zh"


def _china_yesterday() -> dt.date:
    """The day the reconciliation job settles: yesterday on the China calendar."""
    return yesterday_china()
