"""The registration tokens page: invite people, see who used which token, revoke."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user

from admin_app.forms import ActionForm, TokenForm, apply_error
from admin_app.identity import admin_blueprint
from admin_app.links import public_link
from admin_app.services import NotFound, ServiceError
from admin_app.services import tokens as service

bp = admin_blueprint("tokens", __name__, "/admin/tokens")


def _page(form: TokenForm, status: int = 200, created=None):
    tokens = service.list_tokens()
    page = render_template(
        "tokens/index.html", form=form, tokens=tokens, action=ActionForm(), created=created
    )
    return page, status


@bp.get("/")
def index():
    """List tokens with their status, with the form to create one."""
    return _page(TokenForm())


@bp.post("/")
def create():
    """Create a token and show it and its sign-up link, this once only."""
    form = TokenForm()
    if not form.validate():
        return _page(form, 400)
    try:
        token, secret = service.create_registration_token(
            form.expires_in_days.data, current_user.user, form.note.data
        )
    except ServiceError as exc:
        apply_error(form, exc)
        return _page(form, exc.status)
    # Rendered straight into this response: never stored, flashed or put in the session.
    created = {"token": token, "secret": secret, "url": public_link("auth.register", token=secret)}
    return _page(TokenForm(formdata=None), 200, created)


@bp.post("/<int:token_id>/revoke")
def revoke(token_id: int):
    """Revoke a token so nobody can sign up with it."""
    try:
        token = service.revoke_token(token_id, current_user.user)
    except NotFound:
        flash("That registration token does not exist.", "error")
    else:
        flash(f"Token {token.prefix}… is {token.status()}.", "success")
    return redirect(url_for("tokens.index"))
