"""How every face turns a failure into its own platform's answer, written once.

Each dialect's routes share one skeleton: a refusal the platform knows (a domain error, bad
input) becomes the platform's error shape; a database that went away is a 503 the client may
retry; a retry with a used ``Idempotency-Key`` gets the first answer again; anything else is
logged and answered as the platform's internal error, never a bare 500 page or problem+json. A dialect subclasses :class:`FaceRoute` and says only how its platform
words those answers.

Logs name the route's path template (``/v1/vouchers/{code}``), never the request's path: paths
and query strings of these faces carry voucher codes and customer references.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any, ClassVar

from fastapi import Request, Response
from fastapi.routing import APIRoute
from sqlalchemy.exc import DBAPIError

from voucherd.api.responses import replayed
from voucherd.db.engine import is_database_outage
from voucherd.idempotency.service import Replay

log = logging.getLogger("voucherd.dialects")


class FaceRoute(APIRoute):
    face: ClassVar[str] = "face"

    def refusal(self, request: Request, exc: Exception) -> Response | None:
        """The platform's answer to a failure it has words for, or None."""
        return None

    def unavailable(self, request: Request) -> Response:
        raise NotImplementedError

    def internal(self, request: Request) -> Response:
        raise NotImplementedError

    def unfinished_replay(self, request: Request, exc: Replay) -> Response | None:
        """A key whose first request kept no answer (still in flight, or its process died
        before it could): None lets the app answer it (a renderer or a 409)."""
        return None

    def begin(self, request: Request) -> None:
        """Before the handler runs (e.g. to give the request a correlation id)."""

    def finish(self, request: Request, response: Response) -> Response:
        """Every answer, success or failure, on its way out."""
        return response

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            self.begin(request)
            return self.finish(request, await self._answer(handler, request))

        return guarded

    async def _answer(
        self, handler: Callable[[Request], Coroutine[Any, Any, Response]], request: Request
    ) -> Response:
        try:
            return await handler(request)
        except DBAPIError as exc:
            if is_database_outage(exc):
                log.warning("%s %s: database unavailable", self.face, self.path)
                return self.unavailable(request)
            log.exception("%s %s: database error", self.face, self.path)
            return self.internal(request)
        except Replay as exc:
            # The first request's answer, byte for byte: it was already in this face's shape.
            answer = replayed(exc) or self.unfinished_replay(request, exc)
            if answer is not None:
                return answer
            raise
        except Exception as exc:
            answer = self.refusal(request, exc)
            if answer is not None:
                return answer
            log.exception("%s %s: unexpected error", self.face, self.path)
            return self.internal(request)
