"""``spec.accessControl``: which apps may invoke which methods of this app, enforced by this (the called)
sidecar on the authenticated hop, as daprd's ACL (pkg/acl) decides it.

The caller's identity is what the hop brought (``dapr-caller-app-id`` / ``dapr-caller-namespace``), which
only a sidecar of the deployment can send (``app.invocation.hop_security``); never a header of the public
port. Membership of the deployment (its hop secret or its CA) is what daprd's trust domain is, so a caller
is in this sidecar's trust domain (``accessControl.trustDomain``, default ``public``): a policy naming
another trust domain never matches, as for daprd a caller outside it.

Decision (daprd's): without a policy for ``<appId>||<namespace>`` (or with one whose trust domain or namespace
differs), the global ``defaultAction`` (deny when policies exist and it is empty). Otherwise the policy's
``defaultAction`` when set, then the first operation matching the method in the policy's trie (segments
matched in insertion order without backtracking; ``*`` within a segment, ``/*`` one last segment, ``/**``
the rest; a rule on a prefix applies to the paths below it), and for an HTTP app its ``httpVerb`` entry
(the verb's, else ``*``'s). Methods are lowercased for an HTTP app. Allowed iff the action is ``allow``.
A denied call is 403 ``ERR_DIRECT_INVOKE`` ``... PermissionDenied desc = access control policy has denied
access to id: spiffe://<trust domain>/ns/<namespace>/<app id> operation: <method> verb: <VERB>``.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from starlette.responses import Response

from app.errors import error_response
from building_blocks.configuration_spec import AccessControlSpec

if TYPE_CHECKING:
    from app.runtime import Runtime

__all__ = ("AccessControl", "denied")

log = logging.getLogger("layotto.governance")
DEFAULT_TRUST_DOMAIN = "public"


def _glob(text: str, pattern: str) -> bool:
    """``*`` matches any run of characters (daprd's ``isMatch``), in O(len(text) * stars), no backtracking blow-up."""
    t = p = 0
    star, mark = -1, 0
    while t < len(text):
        if p < len(pattern) and pattern[p] != "*" and pattern[p] == text[t]:
            t += 1
            p += 1
        elif p < len(pattern) and pattern[p] == "*":
            star, mark = p, t
            p += 1
        elif star >= 0:
            p = star + 1
            mark += 1
            t = mark
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)


@dataclass(slots=True)
class _Operation:
    action: str
    verbs: dict[str, str]


@dataclass(slots=True)
class _Node:
    part: str
    data: _Operation | None = None
    children: list[_Node] = field(default_factory=list)

    def find(self, part: str, last: bool) -> _Node | None:
        for child in self.children:
            if child.part == part:
                return child
            if child.part == "/*":
                if last:
                    return child
                continue
            if child.part == "/**" or _glob(part, child.part):
                return child
        return None


class _Trie:
    def __init__(self) -> None:
        self.root = _Node("/")

    def put(self, operation: str, data: _Operation) -> None:
        parts = operation.split("/")[1:]
        node = self.root
        for index, raw in enumerate(parts):
            part = "/" + raw
            found = next((child for child in node.children if child.part == part), None)
            last = index == len(parts) - 1
            if found is None:
                found = _Node(part, data if last else None)
                node.children.append(found)
            elif last and found.data is None:
                found.data = data
            node = found

    def search(self, operation: str) -> _Operation | None:
        parts = operation.split("/")[1:]
        node: _Node | None = self.root
        for index, raw in enumerate(parts):
            last = index == len(parts) - 1
            assert node is not None
            node = node.find("/" + raw, last)
            if node is None:
                return None
            if node.data is not None:
                if not last and node.part.endswith("/*") and not node.part.endswith("/**"):
                    continue
                return node.data
            if last:
                wildcard = node.find("/*", True)
                if wildcard is not None and wildcard.data is not None:
                    return wildcard.data
        return None


@dataclass(slots=True)
class _Policy:
    default_action: str
    trust_domain: str
    namespace: str
    operations: _Trie


class AccessControl:
    """The parsed ``spec.accessControl`` (``None`` from ``parse`` when there is none: everything allowed)."""

    def __init__(self, spec: AccessControlSpec, http_app: bool) -> None:
        self.http_app = http_app
        self.trust_domain = spec.trust_domain or DEFAULT_TRUST_DOMAIN
        self.default_action = spec.default_action
        if not self.default_action:
            if spec.policies:
                log.warning("No global default action has been specified. Setting default global action as Deny")
            self.default_action = "deny" if spec.policies else "allow"
        self.policies: dict[str, _Policy] = {}
        for policy in spec.policies:
            trie = _Trie()
            for operation in policy.operations:
                name = operation.name if operation.name.startswith("/") else "/" + operation.name
                if http_app:
                    name = name.lower()
                trie.put(name, _Operation(operation.action, dict.fromkeys(operation.http_verbs, operation.action)))
            self.policies[f"{policy.app_id}||{policy.namespace}"] = _Policy(
                policy.default_action, policy.trust_domain, policy.namespace, trie
            )

    @classmethod
    def parse(cls, spec: AccessControlSpec | None, http_app: bool) -> AccessControl | None:
        if spec is None or not (spec.trust_domain or spec.default_action or spec.policies):
            return None
        return cls(spec, http_app)

    def allows(self, app_id: str, namespace: str, method: str, verb: str) -> bool:
        action = self.default_action
        policy = self.policies.get(f"{app_id}||{namespace}")
        if policy is None or policy.trust_domain != self.trust_domain or policy.namespace != namespace:
            return action.lower() == "allow"
        if policy.default_action:
            action = policy.default_action
        operation = method if method.startswith("/") else "/" + method
        if self.http_app:
            operation = operation.lower()
        found = policy.operations.search(operation)
        if found is not None:
            if not self.http_app:
                action = found.action
            elif verb:
                action = found.verbs.get(verb, found.verbs.get("*", action))
            else:
                action = policy.default_action
        return action.lower() == "allow"


_PARSED: weakref.WeakKeyDictionary[Runtime, AccessControl | None] = weakref.WeakKeyDictionary()


def _of(runtime: Runtime) -> AccessControl | None:
    try:
        return _PARSED[runtime]
    except KeyError:
        http_app = runtime.settings.app_protocol.lower() not in ("grpc", "grpcs")
        parsed = _PARSED[runtime] = AccessControl.parse(runtime.core.configuration_spec.access_control, http_app)
        return parsed


def denied(runtime: Runtime, caller: str, namespace: str, target: str, method: str, verb: str) -> Response | None:
    """Daprd's refusal when the authenticated ``caller`` (app id, namespace) may not call ``method`` with
    ``verb`` on this app (``target``: the app id the hop addressed); ``None`` when it may."""
    acl = _of(runtime)
    if acl is None or acl.allows(caller, namespace, method, verb):
        return None
    spiffe = f"spiffe://{acl.trust_domain}/ns/{namespace}/{caller}"
    reason = f"access control policy has denied access to id: {spiffe} operation: {method} verb: {verb}"
    message = f"failed to invoke, id: {target}, err: rpc error: code = PermissionDenied desc = {reason}"
    return error_response(403, "ERR_DIRECT_INVOKE", message)
