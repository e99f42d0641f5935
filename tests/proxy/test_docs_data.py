"""The gateway's own routes in the shared OpenAPI data (common.gateway_openapi) match the gateway itself."""

from __future__ import annotations

import re

from common.gateway_openapi import OWN_ROUTES, QUEUE_ROUTES
from proxy_app import create_app


def test_every_own_route_is_listed_with_its_view_and_docstring(settings):
    app = create_app(settings=settings)
    served = {
        re.sub(r"<(\w+)>", r"{\1}", rule.rule): (rule.endpoint, app.view_functions[rule.endpoint])
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in ("static", "gateway.api")
    }
    listed = {path: (endpoint, summary) for path, (_, endpoint, summary) in QUEUE_ROUTES.items()} | OWN_ROUTES
    assert set(served) == set(listed)
    for path, (endpoint, summary) in listed.items():
        served_endpoint, view = served[path]
        assert served_endpoint == endpoint
        assert (view.__doc__ or "").strip().splitlines()[0].rstrip(".") == summary
