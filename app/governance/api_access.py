"""``spec.api.allowed`` / ``spec.api.denied``: the APIs this sidecar serves, matched as daprd matches them.

HTTP (rules with ``protocol: http``): a route is allowed unless a denied rule matches it, and, when there
are allowed rules, only if one matches. A rule ``<version>/<name>`` matches a route whose group is that
(``v1/state`` for ``/v1.0/state/...``, ``v1alpha1/lock`` for ``/v1.0-alpha1/lock/...``), or whose path
without its leading ``/`` starts with it (daprd's legacy match: ``v1.0/state``; a prefix, so ``v1.0/s``
matches state, secrets and shutdown alike). A route that is not allowed is not in the route table at all,
as daprd does not register it: the request falls through to service invocation's fallback (404 without an
app id), or, when invocation itself is not allowed, to a plain ``404 page not found``. Health endpoints
are always served.

gRPC (rules with ``protocol: grpc``): ``<name>.<version>`` names a fixed set of ``dapr.proto.runtime.v1``
methods (daprd's table); a method outside the allowed ones, or inside the denied ones, answers
UNIMPLEMENTED ``requested endpoint is not available``. A rule without a protocol applies to neither, as in
daprd (a warning says so at start-up).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from app.errors import GrpcCode, WireError
from app.routing import Router, RouteTable
from building_blocks.configuration_spec import ApiAccessRule, ApiSpec

__all__ = ("GRPC_ENDPOINTS", "GRPC_NOT_AVAILABLE", "GrpcApiAccess", "govern_routes", "http_allowed")

log = logging.getLogger("layotto.governance")

#: daprd's path versions and the group versions they belong to.
_VERSIONS = {"v1.0": "v1", "v1.0-alpha1": "v1alpha1", "v1.0-beta1": "v1beta1"}
_ALWAYS = ("/v1.0/healthz", "/actuator/")

_RUNTIME = "/dapr.proto.runtime.v1.Dapr/"
#: daprd's gRPC table (pkg/api/grpc/endpoints.go): ``<name>.<version>`` -> the methods it covers.
GRPC_ENDPOINTS: dict[str, tuple[str, ...]] = {
    key: tuple(_RUNTIME + method for method in methods)
    for key, methods in {
        "invoke.v1": ("InvokeService",),
        "state.v1": (
            "GetState",
            "GetBulkState",
            "SaveState",
            "DeleteState",
            "DeleteBulkState",
            "ExecuteStateTransaction",
        ),
        "state.v1alpha1": ("QueryStateAlpha1",),
        "publish.v1": ("PublishEvent", "BulkPublishEvent"),
        "publish.v1alpha1": ("BulkPublishEventAlpha1",),
        "bindings.v1": ("InvokeBinding",),
        "secrets.v1": ("GetSecret", "GetBulkSecret"),
        "metadata.v1": ("GetMetadata", "SetMetadata"),
        "configuration.v1alpha1": (
            "GetConfigurationAlpha1",
            "SubscribeConfigurationAlpha1",
            "UnsubscribeConfigurationAlpha1",
        ),
        "configuration.v1": ("GetConfiguration", "SubscribeConfiguration", "UnsubscribeConfiguration"),
        "lock.v1alpha1": ("TryLockAlpha1",),
        "unlock.v1alpha1": ("UnlockAlpha1",),
        "shutdown.v1": ("Shutdown",),
        "subscribe.v1alpha1": ("SubscribeTopicEventsAlpha1",),
    }.items()
}


def _keys(rules: Iterable[ApiAccessRule], protocol: str) -> set[str]:
    return {f"{rule.version}/{rule.name}" for rule in rules if rule.protocol == protocol}


def _matches(template: str, keys: set[str]) -> bool:
    parts = template.split("/")  # "", "v1.0", "state", ...
    version = _VERSIONS.get(parts[1]) if len(parts) > 2 else None
    if version is not None and f"{version}/{parts[2]}" in keys:
        return True
    legacy = template[1:]
    return any(legacy.startswith(key) for key in keys)


def http_allowed(template: str, api: ApiSpec) -> bool:
    """Whether daprd would register the route ``template`` under ``api``."""
    if template.startswith(_ALWAYS):
        return True
    denied = _keys(api.denied, "http")
    if denied and _matches(template, denied):
        return False
    allowed = _keys(api.allowed, "http")
    return not allowed or _matches(template, allowed)


async def _not_found(request: Request) -> Response:
    """Go's ``http.NotFound``: what daprd's router answers when not even invocation is registered."""
    return PlainTextResponse("404 page not found\n", 404)


def govern_routes(table: RouteTable, api: ApiSpec) -> RouteTable:
    """``table`` without the routes ``api`` does not allow (``table`` itself when it allows them all)."""
    for rule in (*api.allowed, *api.denied):
        if not rule.protocol:
            log.warning(
                "API access rule %s/%s has no protocol: it applies to no API (as in Dapr)", rule.version, rule.name
            )
    kept = [route for route in table.routes if http_allowed(route.template, api)]
    invoke_allowed = http_allowed("/v1.0/invoke/", api)
    if len(kept) == len(table.routes) and invoke_allowed:
        return table
    removed = sorted({route.template for route in table.routes} - {route.template for route in kept})
    log.info("APIs not served (spec.api): %s", ", ".join(removed) or "none")
    router = Router()
    router.routes = kept
    return RouteTable([router], table.fallback.endpoint if invoke_allowed else _not_found)


class GrpcApiAccess:
    """The gRPC side: ``blocked(full_method)`` for the front's interceptor (``None``-cheap when no rule)."""

    def __init__(self, api: ApiSpec) -> None:
        self.allowed = self._methods(api.allowed)
        self.denied = self._methods(api.denied)
        self.active = bool(self.allowed or self.denied)

    @staticmethod
    def _methods(rules: Iterable[ApiAccessRule]) -> frozenset[str]:
        return frozenset(
            method
            for rule in rules
            if rule.protocol == "grpc"
            for method in GRPC_ENDPOINTS.get(f"{rule.name}.{rule.version}", ())
        )

    def blocked(self, full_method: str) -> bool:
        if not self.active or not full_method.startswith("/dapr.proto.runtime."):
            return False
        if full_method in self.denied:
            return True
        return bool(self.allowed) and full_method not in self.allowed


#: daprd's answer to a gRPC method ``spec.api`` blocks (``invokev1.ErrorFromHTTPResponseCode(501, ...)``).
GRPC_NOT_AVAILABLE = WireError(
    501,
    "Not Implemented",
    "Not Implemented",
    [
        {
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "Not Implemented",
            "domain": "dapr.io",
            "metadata": {"http.code": "501", "http.error_message": "requested endpoint is not available"},
        }
    ],
    GrpcCode.UNIMPLEMENTED,
)
