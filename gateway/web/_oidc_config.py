"""The OpenID Connect provider a gateway is configured with (settings `oidc_*`).

Shared by the sign-in page (which offers the button) and the OIDC routes (which use it).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from fastapi import Request
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from gateway.errors import ConfigurationError

__all__ = ["OidcConfig", "configured", "oidc_config"]

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class OidcConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    issuer: str
    client_id: str
    client_secret: str
    scopes: str = "openid profile email"
    username_claim: str = "preferred_username"
    label: str = "single sign-on"

    @field_validator("issuer")
    @classmethod
    def _https(cls, value: str) -> str:
        parts = urlsplit(value)
        local = parts.scheme == "http" and parts.hostname in _LOCAL_HOSTS
        if not (parts.scheme == "https" or local) or not parts.hostname:
            raise ValueError("the issuer must be an https:// URL (http only for localhost)")
        return value.rstrip("/")

    @field_validator("client_id", "client_secret", "username_claim")
    @classmethod
    def _present(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("scopes")
    @classmethod
    def _openid(cls, value: str) -> str:
        if "openid" not in value.split():
            raise ValueError("scopes must include 'openid'")
        return value


_FIELDS = ("issuer", "client_id", "client_secret", "scopes", "username_claim", "label")


def oidc_config(settings: object) -> OidcConfig | None:
    """The provider configured in ``settings``, None when none is, or a ConfigurationError."""
    values = {
        name: getattr(settings, f"oidc_{name}", None)
        for name in _FIELDS
        if getattr(settings, f"oidc_{name}", None) is not None
    }
    if not values.get("issuer"):
        if values.get("client_id") or values.get("client_secret"):
            raise ConfigurationError("OpenID Connect: set oidc_issuer too, or none of oidc_*")
        return None
    try:
        return OidcConfig(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigurationError(f"OpenID Connect setting oidc_{where}: {first['msg']}") from exc


def configured(request: Request) -> OidcConfig | None:
    config: OidcConfig | None = getattr(request.app.state, "web_oidc", None)
    return config
