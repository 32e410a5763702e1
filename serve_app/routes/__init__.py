"""The app's routes, one module per family (each an APIRouter the ingress includes), and the one
view of them the guards and the error handler share."""


def flat_routes(routes) -> list:
    """`routes` with the routes of included routers in their place: FastAPI 0.139 keeps an
    included router as one entry (its `original_router`). The app's routers are included without
    a prefix, so their routes' paths are the app's."""
    flat = []
    for route in routes:
        included = getattr(route, "original_router", None)
        flat += flat_routes(included.routes) if included is not None else [route]
    return flat
