"""``endpoint``: publish the new primary in Redis (and in the resume payload).

Apps read it at start-up with :func:`roleswap.coord.endpoint.current_primary`
and learn changes from the intermission resume payload, which they receive
*before* their held requests are released.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import redis

from roleswap.coord import endpoint
from roleswap.errors import StepError
from roleswap.swap.step import Step
from roleswap.switch.base import SwitchMethod

if TYPE_CHECKING:
    from roleswap.swap.check import Check
    from roleswap.swap.context import SwapContext


class Publish(Step):
    name = "publish"

    def title(self, ctx: SwapContext) -> str:
        return f"publish {ctx.target} as the primary of {ctx.config.cluster!r} in Redis"

    def _client(self, ctx: SwapContext) -> redis.Redis:
        if ctx.redis is None:
            raise StepError("the endpoint switch needs [redis] url in the config",
                            remedy="add it, or use --switch none/hook")
        return ctx.redis

    def apply(self, ctx: SwapContext) -> str:
        client = self._client(ctx)
        if "previous_endpoint" not in ctx.state:
            ctx.remember(previous_endpoint=endpoint.current_primary(client, ctx.config.cluster))
        s = ctx.server(ctx.target)
        endpoint.publish(client, ctx.config.cluster, s.name, s.host, s.port, ctx.swap_id)
        return f"{s.name} at {s.address}"

    def undo(self, ctx: SwapContext) -> str:
        if "previous_endpoint" not in ctx.state:
            return "nothing published"
        endpoint.restore(self._client(ctx), ctx.config.cluster, ctx.state["previous_endpoint"])
        return "previous endpoint restored"


class EndpointSwitch(SwitchMethod):
    name = "endpoint"

    def preflight(self, ctx: SwapContext) -> list[Check]:
        from roleswap.swap.check import Check

        if ctx.redis is None:
            return [Check.fail("endpoint", "switch.method = endpoint needs [redis] url",
                               "add [redis] url to the config or choose another --switch")]
        return [Check.ok("endpoint", f"the new primary will be published under cluster "
                                     f"{ctx.config.cluster!r}")]

    def steps(self, ctx: SwapContext) -> dict[str, list[Step]]:
        return {"after_promote": [Publish()]}

    def rewrite_redis(self, ctx: SwapContext,
                      status: dict[str, str]) -> tuple[str, Callable[[], bool]] | None:
        client = ctx.redis
        if client is None:
            return None
        if status.get("publish") == "done":
            s = ctx.server(ctx.target)

            def publish() -> bool:
                endpoint.publish(client, ctx.config.cluster, s.name, s.host, s.port, ctx.swap_id)
                return True
            return "the published primary", publish
        if status.get("publish") == "undone" and "previous_endpoint" in ctx.state:
            def restore() -> bool:
                endpoint.restore(client, ctx.config.cluster, ctx.state["previous_endpoint"])
                return True
            return "the restored published primary", restore
        return None

    def prepare(self, ctx: SwapContext) -> None:
        """Record the endpoint to restore on rollback now: two Redis round trips
        (read it, journal it) fewer inside the pause window.  Nothing else publishes
        while we hold the cluster lock."""
        if ctx.redis is None or "previous_endpoint" in ctx.state:
            return
        try:
            previous = endpoint.current_primary(ctx.redis, ctx.config.cluster)
        except redis.RedisError:
            return  # the publish step reads it itself, and says what is wrong
        ctx.remember(previous_endpoint=previous)
