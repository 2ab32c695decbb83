"""``spec.accessControl`` for service invocation: daprd's matching (pkg/acl's cases), and, against real sidecar
processes, the called sidecar refusing with 403 ``ERR_DIRECT_INVOKE`` by the caller identity of the
authenticated hop, never by headers a client of the public port sets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.governance.access_control import AccessControl
from building_blocks.configuration_spec import AccessControlSpec, AppOperationSpec, AppPolicySpec
from tests.e2e.test_invoke_processes import Node, ready, start


def _acl(http_app: bool = True, default: str = "deny") -> AccessControl:
    operations = (
        AppOperationSpec("/op1", ("POST", "GET"), "allow"),
        AppOperationSpec("/op2", ("*",), "deny"),
        AppOperationSpec("/op3/a/*", ("*",), "allow"),
        AppOperationSpec("/op4/c/**", ("*",), "allow"),
        AppOperationSpec("/op5/b*", ("*",), "allow"),
        AppOperationSpec("/Mixed", ("GET",), "allow"),
    )
    policies = (
        AppPolicySpec("app1", "allow", "public", "ns1", operations),
        AppPolicySpec("app2", "", "public", "ns2", (AppOperationSpec("/op1", ("GET",), "allow"),)),
        AppPolicySpec("elsewhere", "allow", "other-domain", "ns1", ()),
    )
    return AccessControl(AccessControlSpec(default, "public", policies), http_app)


def test_daprs_decisions() -> None:
    acl = _acl()
    assert acl.allows("app1", "ns1", "op1", "POST")
    assert acl.allows("app1", "ns1", "/op1", "GET")
    assert acl.allows("app1", "ns1", "op1", "PUT")  # no verb entry: the policy's default (allow)
    assert not acl.allows("app1", "ns1", "op2", "GET")
    assert acl.allows("app1", "ns1", "op1/x", "GET")  # a rule on a prefix applies below it
    assert acl.allows("app1", "ns1", "op3/a/b", "GET")
    assert acl.allows("app1", "ns1", "op3/a", "GET")  # /a/* also matches /a
    assert acl.allows("app1", "ns1", "op4/c/d/e", "GET")
    assert acl.allows("app1", "ns1", "op5/bc", "GET")
    assert acl.allows("app1", "ns1", "mixed", "GET") and acl.allows("app1", "ns1", "MIXED", "GET")  # lowercased
    assert not acl.allows("app2", "ns2", "op1", "POST")  # no default on the policy: empty action, denied
    assert acl.allows("app2", "ns2", "op1", "GET")
    assert not acl.allows("app2", "ns2", "other", "GET")  # the global default (deny)
    assert not acl.allows("app1", "ns2", "op1", "GET")  # policies are per namespace
    assert not acl.allows("elsewhere", "ns1", "op1", "GET")  # another trust domain: the global default
    assert not acl.allows("unknown", "ns1", "op1", "GET")
    assert _acl(default="allow").allows("unknown", "ns1", "anything", "GET")


def test_single_stage_wildcard_stops_at_one_segment() -> None:
    operations = (AppOperationSpec("/op7/a/b/*", ("*",), "allow"), AppOperationSpec("/op7/x*", ("*",), "allow"))
    spec = AccessControlSpec("deny", "", (AppPolicySpec("c", "deny", "public", "default", operations),))
    acl = AccessControl(spec, http_app=True)
    assert acl.allows("c", "default", "op7/a/b/c", "GET")
    assert not acl.allows("c", "default", "op7/a/b/c/d", "GET")
    assert acl.allows("c", "default", "op7/xyz", "GET")
    assert not acl.allows("c", "default", "op7/y", "GET")
    assert acl.allows("c", "default", "op7/x" + "*a" * 50_000, "GET")  # a long segment: linear, no blow-up


def test_grpc_apps_use_the_operation_action_case_sensitively() -> None:
    acl = _acl(http_app=False)
    assert acl.allows("app1", "ns1", "op2", "") is False
    assert acl.allows("app1", "ns1", "Mixed", "") and acl.allows("app1", "ns1", "mixed", "")  # default allow


CONFIG = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: acl}
spec:
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
      - appId: alpha
        defaultAction: deny
        trustDomain: public
        namespace: default
        operations:
          - {name: /status/*, httpVerb: [GET, POST], action: allow}
          - {name: /echo, httpVerb: ["*"], action: allow}
"""


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node, Node]]:
    home = tmp_path_factory.mktemp("home")
    config = home / "acl.yaml"
    config.write_text(CONFIG)
    env = {"HOME": str(home)}
    callee = start("beta", env, "--config", str(config))
    alpha = start("alpha", env)
    gamma = start("gamma", env)
    try:
        ready(callee, alpha, gamma)
        yield alpha, gamma, callee
    finally:
        for node in (alpha, gamma, callee):
            node.close()


def test_the_called_sidecar_enforces_the_policy_of_the_authenticated_caller(mesh: tuple[Node, Node, Node]) -> None:
    alpha, gamma, beta = mesh
    assert alpha.invoke("beta", "status/201", "POST").status_code == 201
    assert alpha.invoke("beta", "echo", "PUT", content=b"x").status_code == 200
    refused = alpha.invoke("beta", "status/200", "DELETE")
    assert refused.status_code == 403
    assert refused.json() == {
        "errorCode": "ERR_DIRECT_INVOKE",
        "message": "failed to invoke, id: beta, err: rpc error: code = PermissionDenied desc = access control "
        "policy has denied access to id: spiffe://public/ns/default/alpha operation: status/200 verb: DELETE",
    }
    assert alpha.invoke("beta", "whoami").status_code == 403  # not in the policy: its default (deny)
    denied = gamma.invoke("beta", "status/200")  # no policy for gamma: the global default (deny)
    assert denied.status_code == 403 and "spiffe://public/ns/default/gamma" in denied.json()["message"]
    # a client of gamma's public port claiming to be alpha is still gamma: identity comes from the hop
    spoofed = gamma.invoke(
        "beta", "status/201", "POST", headers={"dapr-caller-app-id": "alpha", "dapr-caller-namespace": "default"}
    )
    assert spoofed.status_code == 403
    # the callee's own app calling itself through its sidecar is not a hop: not subject to the ACL
    assert beta.invoke("beta", "status/200", "DELETE").status_code == 200
