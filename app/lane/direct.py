"""An invocation made from the lane's callbacks: no task, future or coroutine between the caller's request and
the target's answer, when the invocation block says the call is one attempt it can make at once
(``InvocationBlock.direct``: no resiliency policy, the app healthy, the other sidecar's address known) and
a pooled connection is idle (``HttpClient.exchange``).

The request goes out from the parser's last callback; the answer comes back from the upstream connection's,
and is written as the general path writes it (``Relay``'s headers, ``Content-Length``, the door's metrics and
the app channel's), so the wire cannot tell the paths apart. Whatever the shortcut does not finish goes to the
general path (``LaneCycle.spawn``) as if the shortcut had not been tried, or ends as the general path would:

* no idle connection, or the app channel sends otherwise (gRPC, ``--app-max-concurrency``, a pipeline): the
  general path, nothing having been sent;
* an answer that streams (large or of unknown length): relayed by the general path's relay, in a task;
* the other sidecar no longer serves the app, or its connection broke before answering: that address is
  marked failed and the general path calls again (it would retry: Dapr's built-in retries);
* the app's connection broke before answering: an idempotent call is made again on a new connection (as the
  client does for a stale keep-alive connection); any other fails as the general path fails it.

Measured with ``perf/run --scenarios invoke`` (15 s): see the README's benchmark section.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING

from starlette.responses import Response as StarletteResponse

from app.errors import error_response, render_error
from app.http_client import ConnectionBroken, HttpClientError, Response
from app.invocation.relay import Relay
from app.lane.relay import write_response
from app.observability.front import count_request
from building_blocks.errors import InvocationFailed
from building_blocks.invocation.base import MISROUTED, SIDECAR_ERROR
from building_blocks.invocation.block import Direct
from building_blocks.invocation.headers import response_headers

if TYPE_CHECKING:
    from app.invocation.invoker import Invoker
    from app.lane.cycle import LaneCycle
    from app.observability.metrics import DaprMetrics

__all__ = ("DirectCall", "Responded")

#: Verbs the client sends again on a new connection when a kept-alive one turns out closed (Go's rule).
_REPLAYABLE = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_MISROUTED = MISROUTED.encode()

#: Called once the answer is written: its status (the hop's metrics).
Responded = Callable[[int], None]


class DirectCall:
    """One invocation's attempt, from the lane's request to the target's answer (an ``app.http_client.Exchange``).

    ``metrics``: the API door's (``count_request``), when on; ``hop``: the call came over the hop (its
    failures are marked as the sidecar's own, ``Invoker.serve_hop``); ``responded``: the hop's metrics."""

    __slots__ = ("body", "cycle", "hop", "invoker", "metrics", "plan", "raw_target", "responded", "started", "target")

    def __init__(
        self,
        cycle: LaneCycle,
        invoker: Invoker,
        plan: Direct,
        raw_target: str,
        body: bytes,
        metrics: DaprMetrics | None,
        hop: bool,
        responded: Responded | None,
    ) -> None:
        self.cycle = cycle
        self.invoker = invoker
        self.plan = plan
        self.raw_target = raw_target
        self.body = body
        self.metrics = metrics
        self.hop = hop
        self.responded = responded
        self.started = perf_counter()
        self.target = b""

    @classmethod
    def start(
        cls,
        cycle: LaneCycle,
        invoker: Invoker,
        raw_target: str,
        method: str,
        metrics: DaprMetrics | None = None,
        hop: bool = False,
        responded: Responded | None = None,
        caller: tuple[bytes, bytes] | None = None,
    ) -> bool:
        """Makes the call when it can be made at once; ``False``: nothing was sent (serve it the general way).
        ``caller``: a hop's caller namespace and app id, when found already (``HopApp.admit``)."""
        scope = cycle.scope
        plan = invoker.block.direct(raw_target, method, cycle.method, scope["headers"], hop, caller)
        if plan is None:
            return False
        chunks = cycle.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        cycle.chunks = [body]  # still there for the general path
        call = cls(cycle, invoker, plan, raw_target, body, metrics, hop, responded)
        target = invoker.transport.direct(plan, cycle.method, scope["query_string"], body, call)
        if target is None:
            return False
        call.target = target
        return True

    # -- app.http_client.Exchange ----------------------------------------------------------------------------

    def answered(self, response: Response) -> None:
        try:
            if self._misrouted(response):
                return
            status = response.status_code
            self._app_metrics(response)
            body = response.ready_body() or b""
            # Names lower-case and checked by the client's parser, no framing left: ``relay`` writes them as is.
            self.cycle.relay(status, response_headers(response.raw_headers, lowered=True), body)
        except Exception as exc:  # e.g. an app's header the server will not write: as ``LaneCycle.run`` ends
            self.cycle.fail(exc)
        self._done()

    def streaming(self, response: Response) -> None:
        if self._misrouted(response):
            return
        self._app_metrics(response)
        self.cycle.spawn(lambda cycle: self._relay(response))

    def failed(self, error: HttpClientError) -> None:
        try:
            self._failed(error)
        except Exception as exc:  # as ``LaneCycle.run`` ends a route that fails
            self.cycle.fail(exc)
            self._done()

    def _failed(self, error: HttpClientError) -> None:
        plan, verb = self.plan, self.cycle.method
        if plan.address:  # the other sidecar: gone; the general path tries again (Dapr's built-in retries)
            self.invoker.block.peer_failed(plan.address)
            self._fall_back()
            return
        if verb in _REPLAYABLE and isinstance(error, ConnectionBroken):
            self._fall_back()  # a stale kept-alive connection: once more on a new one, as the client does
            return
        self._app_metrics(None)
        failure = InvocationFailed(self.raw_target, self.invoker.transport.app_failure(verb, self.target, error))
        if self.hop:
            answer = error_response(500, "ERR_DIRECT_INVOKE", str(failure))
            answer.headers[SIDECAR_ERROR] = "1"
        else:
            answer = render_error(failure, self.invoker.block.instance.app_id)
        cycle = self.cycle
        cycle.respond(answer.status_code, answer.raw_headers, bytes(answer.body))
        self._done()

    # -- internals -------------------------------------------------------------------------------------------

    def _misrouted(self, response: Response) -> bool:
        """A sidecar that no longer serves the app: the general path tries the next one."""
        address = self.plan.address
        if not address:
            return False
        for name, _ in response.raw_headers:
            if name == _MISROUTED:
                break
        else:
            return False
        response.close()
        self.invoker.block.peer_failed(address)
        self._fall_back()
        return True

    def _fall_back(self) -> None:
        cycle = self.cycle
        cycle.spawn(cycle.serve)

    def _app_metrics(self, response: Response | None) -> None:
        """The app channel's count of a call into the app (as ``AppChannel.send``: until the answer's head)."""
        if self.plan.address:
            return
        channel = self.invoker.transport.channel
        metrics = channel.metrics if channel is not None else None
        if metrics is None:
            return
        status, received = 500, 0  # no answer, as daprd counts it
        if response is not None:
            status = response.status_code
            for name, size in response.raw_headers:  # its first Content-Length, not decoded: 0.7 µs -> 0.4 µs
                if name == b"content-length":
                    received = int(size) if size.isdigit() else 0
                    break
        seconds = perf_counter() - self.started
        metrics.app_invocation(self.cycle.method, self.target, status, len(self.body), received, seconds)

    async def _relay(self, response: Response) -> None:
        """The general path's relay of an answer that streams (an error answer read whole first, as the block
        does: ``InvocationBlock._classify``)."""
        answer: StarletteResponse
        try:
            if not 200 <= response.status_code < 400:
                await response.aread()
            answer = Relay(response)
        except Exception as exc:
            answer = render_error(exc, self.invoker.block.instance.app_id)
        try:
            await write_response(self.cycle, answer)
        finally:
            self._done()

    def _done(self) -> None:
        cycle = self.cycle
        if self.metrics is not None:
            count_request(self.metrics, cycle.scope, cycle.status, cycle.sent, perf_counter() - self.started)
        if self.responded is not None:
            self.responded(cycle.status)
