"""Routes that take a file, declared as such: `@upload("setting")` on the endpoint.

A declared upload route gets the body limit its setting names (voice clips: `max_voice_clip_bytes`)
instead of the JSON one, and takes `multipart/form-data` instead of JSON (415 otherwise): the JSON
rule does not apply to it, but the Host check, API keys and the Origin rule do (a multipart form is
what a foreign page can send without a preflight, so its Origin is checked like any POST's). The
guards find the route a request goes to as the router is about to (`route_for`), and read the
declaration from its endpoint: one declaration, no list to keep in step with the routes.
"""

from __future__ import annotations

from typing import Callable

from starlette.routing import Match, Mount

from ..protocols.error_shape import Refusal
from ..routes import flat_routes

ATTRIBUTE = "upload_limit_setting"
MULTIPART = "multipart/form-data"
MULTIPART_REQUIRED = Refusal("multipart_required", "this route takes a file: send it as multipart/form-data")


def upload(limit_setting: str) -> Callable:
    """Declares an endpoint an upload route whose body limit is the setting `limit_setting` (bytes).
    Put it under the route's decorator (`@router.post(...)` then `@upload(...)`)."""
    def declare(endpoint):
        setattr(endpoint, ATTRIBUTE, limit_setting)
        return endpoint
    return declare


def limit_setting(route) -> str | None:
    """The body-limit setting of a route declared with `@upload`, else None."""
    return getattr(getattr(route, "endpoint", None), ATTRIBUTE, None)


def route_for(scope):
    """The route of the application that serves this request (its path, with its method), or None.
    Asks the routes of the app Starlette puts in the scope, as its router is about to. A mount (the
    static files) takes any method and answers 405 itself: it does not count."""
    routes = flat_routes(getattr(getattr(scope.get("app"), "router", None), "routes", ()))
    return next((route for route in routes
                 if not isinstance(route, Mount) and route.matches(scope)[0] == Match.FULL), None)


def upload_limits(routes, settings) -> dict[tuple[str, str], int]:
    """(method, path) -> body limit of every upload route among `routes` (the OpenAPI document's
    view: paths as the routes declare them)."""
    limits = {}
    for route in flat_routes(routes):
        setting = limit_setting(route)
        if setting is not None:
            for method in getattr(route, "methods", ()) or ():
                limits[(method, route.path)] = getattr(settings, setting)
    return limits
