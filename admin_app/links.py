"""Links the product prints (docs/contract.md §2 ``PUBLIC_URL``): never built from the request's ``Host``."""

from __future__ import annotations

from flask import current_app, request, url_for


def public_link(endpoint: str, **values: object) -> str:
    """``PUBLIC_URL`` + the path of ``endpoint``; without ``PUBLIC_URL``, the path alone (relative).

    A forged ``Host`` header must never turn a sign-up link into ``http://evil.example/…``,
    so the request's host is not used at all.
    """
    path = url_for(endpoint, **values)
    base = current_app.config["SEADRAGON"].public_url
    if base is None:
        return path
    # PUBLIC_URL already names the external prefix, so the app's own mount point is not repeated.
    root = request.script_root if request else ""
    if root and path.startswith(root):
        path = path[len(root) :]
    return base + path
