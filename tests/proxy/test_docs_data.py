"""The gateway's own routes in the shared OpenAPI data (common.gateway_openapi) match the gateway itself."""

from __future__ import annotations

import re

from common.gateway_openapi import OWN_ROUTES, QUEUE_ROUTES
from proxy_app import create_app


def test_every_own_route_is_listed_with_its_view_and_docstring(settings):
    app = create_app(settings=settings)
    served = {
        re.sub(r"<(\w+)>", r"{\1}", rule.rule): (
            rule.methods or set(),
            rule.endpoint,
            app.view_functions[rule.endpoint],
        )
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in ("static", "gateway.api")
    }
    queue = {
        path: (method.upper(), endpoint, summary)
        for path, (method, endpoint, summary) in QUEUE_ROUTES.items()
    }
    listed = OWN_ROUTES | queue
    assert set(served) == set(listed)
    for path, (method, endpoint, summary) in listed.items():
        methods, served_endpoint, view = served[path]
        assert methods - {"HEAD", "OPTIONS"} == {method}
        assert served_endpoint == endpoint
        assert (view.__doc__ or "").strip().splitlines()[0].rstrip(".") == summary
