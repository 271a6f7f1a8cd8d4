"""The webhook routes: one per registered event type (:mod:`events.registry`), plus ``/webhooks``.

Every route is the one endpoint :func:`webhook`; the route's path says which
event type it receives. The routes read the raw body themselves (the
contract's checks come first), so each route's OpenAPI entry gets its
payload model and the vendor's example from the registry. A webhook POST is
dispatched by :class:`WebhookDispatch`, ahead of FastAPI's router.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from events.registry import EVENT_TYPES, VISIT_COMPLETED, by_route
from ingress.context import Ctx, IngressContext
from ingress.receive import receive

REF = "#/components/schemas/{model}"


def openapi_body(model: Any, example: dict[str, Any]) -> dict[str, Any]:
    """The vendor's payload model and documented example for an endpoint's OpenAPI entry.

    Routes read the raw body themselves (the contract's checks come first), so
    the schema is attached here; :func:`with_body_schemas` adds the models.
    """
    schema = {"$ref": REF.format(model=model.__name__)}
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema, "example": example}},
        }
    }


def with_body_schemas(app: FastAPI) -> None:
    """Put the payload models (and their nested definitions) into ``components``."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            components = document.setdefault("components", {}).setdefault("schemas", {})
            for model in (t.full for t in EVENT_TYPES.values()):
                schema = model.model_json_schema(ref_template=REF)
                components.update(schema.pop("$defs", {}))
                components[model.__name__] = schema
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Durably written to Kafka",
        "content": {
            "application/json": {
                "example": {
                    "received": True,
                    "event_id": f"{VISIT_COMPLETED}:gfe_abc123xyz789:1714675200000",
                }
            }
        },
    },
    400: {"description": "Not UTF-8, not JSON, not an object, too deep, or wrong/missing event"},
    401: {"description": "Missing or wrong credentials or signature"},
    403: {"description": "Client address not allowed"},
    413: {"description": "Body too large"},
    415: {"description": "Content-Type is not application/json"},
    422: {"description": "Schema violation; lists field paths only"},
    503: {"description": "Kafka did not acknowledge in time; retry after Retry-After seconds"},
}


async def webhook(request: Request, ctx: Ctx) -> Response:
    """The webhook of the event type registered for this route."""
    return await receive(request, ctx, by_route(request.scope["route"].path).name)


async def any_event(request: Request, ctx: Ctx) -> Response:
    """Any event, routed by its ``event`` field; unknown types are kept, not lost."""
    return await receive(request, ctx, None)


def add_webhooks(app: FastAPI) -> dict[str, tuple[APIRoute, str | None]]:
    """The routes of every event type registered now, then ``/webhooks``.

    Returns each webhook route by path with the event it expects (None: any),
    for :class:`WebhookDispatch`.
    """
    for event_type in EVENT_TYPES.values():
        app.add_api_route(
            event_type.route,
            webhook,
            methods=["POST"],
            name=event_type.name.replace(".", "_"),
            description=f"Spakinect's ``{event_type.name}`` webhook.",
            responses=RESPONSES,
            openapi_extra=openapi_body(event_type.full, event_type.sample),
        )
    default = EVENT_TYPES[VISIT_COMPLETED]
    app.add_api_route(
        "/webhooks",
        any_event,
        methods=["POST"],
        responses=RESPONSES,
        openapi_extra=openapi_body(default.full, default.sample),
    )
    with_body_schemas(app)
    expected = {t.route: t.name for t in EVENT_TYPES.values()} | {"/webhooks": None}
    return {
        route.path: (route, expected[route.path])
        for route in app.routes
        if isinstance(route, APIRoute) and route.path in expected
    }


def route_path(scope: Scope) -> str:
    """The request's path below ``root_path``, as Starlette's router matches it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :]
    return path


class WebhookDispatch:
    """Pure ASGI: a webhook POST goes straight to :func:`ingress.receive.receive`.

    FastAPI's per-request machinery (the router's matching, the exit stacks,
    dependency solving, the request handler) was about a third of a webhook's
    CPU in the ingress's profile; the webhook needs none of it: it reads its
    own body, its context is built once by the app factory. Every other
    request, and every other method on a webhook path (405), goes on to
    FastAPI; the routes stay registered there for the OpenAPI document. It
    sits inside the access log and Starlette's error middleware, so a webhook
    is logged, counted and turned into a 500 on a bug exactly as before.
    """

    def __init__(
        self,
        app: ASGIApp,
        ctx: IngressContext,
        webhooks: dict[str, tuple[APIRoute, str | None]],
    ) -> None:
        self.app = app
        self.ctx = ctx
        self.webhooks = webhooks

    async def __call__(self, scope: Scope, receive_: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            target = self.webhooks.get(route_path(scope))
            if target is not None:
                route, expected_event = target
                scope["route"] = route  # the access log's route label, the span's name
                response = await receive(Request(scope, receive_), self.ctx, expected_event)
                await response(scope, receive_, send)
                return
        await self.app(scope, receive_, send)
