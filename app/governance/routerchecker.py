"""``middleware.http.routerchecker``: requests whose escaped path (with ``?query`` when there is one) does not
match ``rule`` (a regular expression, searched anywhere, as Go's ``MatchString``) get 400 ``invalid router``."""

from __future__ import annotations

import re

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from app.governance.pipeline import MiddlewareSpec, Next
from building_blocks.errors import SpecError

__all__ = ("RouterChecker", "create")


class RouterChecker:
    def __init__(self, rule: re.Pattern[str]) -> None:
        self.rule = rule

    async def __call__(self, request: Request, proceed: Next) -> Response:
        scope = request.scope
        uri = scope.get("raw_path", b"").decode("latin-1") or scope["path"] or "/"
        query: bytes = scope.get("query_string", b"")
        if query:
            uri += "?" + query.decode("latin-1")
        if self.rule.search(uri) is None:
            return PlainTextResponse("invalid router", 400)
        return await proceed()


async def create(spec: MiddlewareSpec) -> RouterChecker:
    rule = spec.metadata.get("rule", "")
    try:
        return RouterChecker(re.compile(rule))
    except re.error as exc:
        raise SpecError(f"{spec.where}: failed to compile rule regexp: {exc}") from None
