"""Who may see the dashboard: loopback by default; anything else needs a token or a password.

The pages show masked data, but still which patients' settlements failed and when, so a bind
on a hospital LAN address without credentials is refused outright (exit 2) rather than served.
Credentials come from the environment (the service manager's environment file), never from
the TOML file ops may mail around, and are compared in constant time.
"""
from __future__ import annotations

import hmac
import ipaddress
import os
from dataclasses import dataclass
from typing import Mapping, Optional

ENV_TOKEN = "MI_WORKER_DASHBOARD_TOKEN"
ENV_USER = "MI_WORKER_DASHBOARD_USER"
ENV_PASSWORD = "MI_WORKER_DASHBOARD_PASSWORD"
MIN_SECRET = 16
COOKIE = "mi_dashboard_token"


class AuthConfigError(ValueError):
    """A bind the rules refuse, or credentials too weak to count; the message says what to do."""


@dataclass(frozen=True)
class Credentials:
    token: Optional[str] = None
    user: Optional[str] = None
    password: Optional[str] = None

    @property
    def configured(self) -> bool:
        return bool(self.token or (self.user and self.password))

    def secrets(self):
        return [s for s in (self.token, self.password) if s]

    def token_ok(self, offered: Optional[str]) -> bool:
        return bool(self.token and offered) and hmac.compare_digest(
            offered.encode("utf-8"), self.token.encode("utf-8"))

    def basic_ok(self, user: Optional[str], password: Optional[str]) -> bool:
        if not (self.user and self.password and user is not None and password is not None):
            return False
        u = hmac.compare_digest(user.encode("utf-8"), self.user.encode("utf-8"))
        p = hmac.compare_digest(password.encode("utf-8"), self.password.encode("utf-8"))
        return u and p


def from_env(env: Optional[Mapping[str, str]] = None) -> Credentials:
    env = os.environ if env is None else env
    c = Credentials(token=env.get(ENV_TOKEN) or None, user=env.get(ENV_USER) or None,
                    password=env.get(ENV_PASSWORD) or None)
    if c.token and len(c.token) < MIN_SECRET:
        raise AuthConfigError(f"{ENV_TOKEN} is shorter than {MIN_SECRET} characters; use a "
                              "long random value (e.g. python -c \"import secrets; "
                              "print(secrets.token_urlsafe(32))\")")
    if bool(c.user) != bool(c.password):
        raise AuthConfigError(f"set both {ENV_USER} and {ENV_PASSWORD} for basic auth, or "
                              "neither")
    if c.password and len(c.password) < MIN_SECRET:
        raise AuthConfigError(f"{ENV_PASSWORD} is shorter than {MIN_SECRET} characters")
    return c


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, creds: Credentials) -> None:
    """Refuse a non-loopback bind without credentials (the caller exits 2 with the message)."""
    if is_loopback(host) or creds.configured:
        return
    raise AuthConfigError(
        f"refusing to serve the dashboard on {host}: only 127.0.0.1 / ::1 may be bound without "
        f"credentials. Set {ENV_TOKEN} (a random value of {MIN_SECRET}+ characters; open "
        f"http://HOST:PORT/?token=… once, or send 'Authorization: Bearer …'), or "
        f"{ENV_USER} and {ENV_PASSWORD} for basic auth, in the service's environment; "
        "and put TLS in front of it (a reverse proxy) on an untrusted network.")
