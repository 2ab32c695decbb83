"""``middleware.http.bearer``: requests need ``Authorization: Bearer <JWT>`` signed by a key of the issuer's
JWKS, with the configured ``issuer`` and ``audience`` (5 minutes of clock skew allowed), as Dapr's.

Metadata: ``issuer`` (alias ``issuerURL``) and ``audience`` (alias ``clientID``), both required; ``jwksURL``,
else the ``jwks_uri`` of ``<issuer>/.well-known/openid-configuration`` (whose ``issuer`` must match). The
key set is fetched at start-up (a failure stops start-up) and again, off the request path's critical
section and at most every 10 minutes, when a token names a key it does not hold. Anything wrong with the
header or the token is 401 ``Unauthorized``; validation is PyJWT's (algorithms from the keys, ``none`` never).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import jwt
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from app.governance.pipeline import MiddlewareSpec, Next
from building_blocks.errors import SpecError

__all__ = ("Bearer", "create")

log = logging.getLogger("layotto.governance")
_PREFIX = "bearer "
REFRESH_INTERVAL = 600.0
SKEW = 300
FETCH_TIMEOUT = 30.0
#: Longer tokens are refused unread: a header is bounded by the server, a JWT needs nowhere near this.
MAX_TOKEN = 16 * 1024


async def _fetch_json(url: str) -> Any:
    async with httpx.AsyncClient(timeout=FETCH_TIMEOUT) as client:
        answer = await client.get(url)
    if answer.status_code != 200:
        raise ValueError(f"invalid response status code: {answer.status_code}")
    return answer.json()


class Bearer:
    def __init__(self, issuer: str, audience: str, jwks_url: str) -> None:
        self.issuer = issuer
        self.audience = audience
        self.jwks_url = jwks_url
        self.keys: dict[str, jwt.PyJWK] = {}
        self.anonymous: list[jwt.PyJWK] = []  # keys without a kid: tried in turn
        self._fetched = 0.0
        self._refreshing: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        keyset = jwt.PyJWKSet.from_dict(await _fetch_json(self.jwks_url))
        self.keys = {key.key_id: key for key in keyset.keys if key.key_id}
        self.anonymous = [key for key in keyset.keys if not key.key_id]
        self._fetched = time.monotonic()

    async def _refresh_if_due(self) -> None:
        if time.monotonic() - self._fetched < REFRESH_INTERVAL:
            return
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self.refresh())
        try:
            await asyncio.shield(self._refreshing)
        except Exception as exc:
            log.warning("Error while refreshing JWKS cache: %s", exc)

    async def _candidates(self, token: str) -> list[jwt.PyJWK]:
        kid = jwt.get_unverified_header(token).get("kid")
        if not isinstance(kid, str):
            return [*self.keys.values(), *self.anonymous] if kid is None else []
        if kid not in self.keys:
            await self._refresh_if_due()
        key = self.keys.get(kid)
        return [key] if key is not None else []

    def _valid(self, token: str, key: jwt.PyJWK) -> bool:
        algorithm = key.algorithm_name
        try:
            jwt.decode(
                token,
                key.key,
                algorithms=[algorithm] if algorithm else [],
                audience=self.audience,
                issuer=self.issuer,
                leeway=SKEW,
            )
        except (jwt.InvalidTokenError, ValueError, TypeError):
            return False
        return True

    async def __call__(self, request: Request, proceed: Next) -> Response:
        header = request.headers.get("authorization", "")
        if len(header) < len(_PREFIX) + 1 or header[: len(_PREFIX)].lower() != _PREFIX:
            return _unauthorized()
        token = header[len(_PREFIX) :]
        if len(token) < 10 or len(token) > MAX_TOKEN:
            return _unauthorized()
        try:
            candidates = await self._candidates(token)
        except (jwt.InvalidTokenError, ValueError, TypeError):
            return _unauthorized()
        if not any(self._valid(token, key) for key in candidates):
            return _unauthorized()
        return await proceed()


def _unauthorized() -> Response:
    return PlainTextResponse("Unauthorized", 401)


async def create(spec: MiddlewareSpec) -> Bearer:
    metadata = spec.metadata
    issuer = metadata.get("issuer") or metadata.get("issuerURL") or ""
    audience = metadata.get("audience") or metadata.get("clientID") or ""
    if not issuer:
        raise SpecError(f"{spec.where}: metadata property 'issuer' is required")
    if not audience:
        raise SpecError(f"{spec.where}: metadata property 'audience' is required")
    jwks_url = metadata.get("jwksURL", "")
    try:
        if not jwks_url:
            document = await _fetch_json(issuer.rstrip("/") + "/.well-known/openid-configuration")
            jwks_url = document.get("jwks_uri", "") if isinstance(document, dict) else ""
            if not jwks_url:
                raise ValueError("the OpenID Configuration document does not contain a 'jwks_uri'")
            if document.get("issuer") != issuer:
                raise ValueError(
                    f"the issuer found in the OpenID Configuration document ('{document.get('issuer')}') doesn't "
                    f"match the one provided in the component's metadata ('{issuer}')"
                )
        bearer = Bearer(issuer, audience, jwks_url)
        await bearer.refresh()
    except (httpx.HTTPError, ValueError, jwt.PyJWKError, jwt.PyJWKSetError) as exc:
        raise SpecError(f"{spec.where}: failed to fetch JWKS: {exc}") from None
    return bearer
