"""The API keys page: keys for applications, each with its own queue priority."""

from __future__ import annotations

from flask import flash, redirect, render_template, url_for
from flask_login import current_user

from admin_app.extensions import db
from admin_app.forms import ActionForm, APIKeyForm, apply_error
from admin_app.identity import admin_blueprint
from admin_app.policy_form import in_words, patch_from_form, refused_edit
from admin_app.requests_log import USAGE_WINDOWS, usage_summary
from admin_app.services import NotFound, ServiceError
from admin_app.services import apikeys as service
from admin_app.services import policies as policy_patch
from common.models import utcnow
from common.policies import POLICY_FIELDS
from common.usage import usage_by_end_user

bp = admin_blueprint("apikeys", __name__, "/admin/apikeys")


EDIT_FIELDS = ("name", "priority", *POLICY_FIELDS, "end_user_header")
CREATE_POLICY_FIELDS = (*POLICY_FIELDS, "end_user_header")


def _page(form: APIKeyForm, status: int = 200, created=None, editing=None, creating=None):
    keys = service.list_api_keys()
    usage = usage_summary("key")
    # The people behind shared keys (end_user_header), over the same week as the usage columns.
    end_users = usage_by_end_user(db.session, since=utcnow() - USAGE_WINDOWS["week"])
    page = render_template(
        "apikeys/index.html",
        form=form,
        keys=keys,
        action=ActionForm(),
        created=created,
        usage=usage,
        end_users=end_users,
        edit_fields=EDIT_FIELDS,
        editing=editing,
        create_fields=CREATE_POLICY_FIELDS,
        creating=creating,
    )
    return page, status


@bp.get("/")
def index():
    """List keys (prefix, priority, created, last used, active, usage), with the form to create one."""
    return _page(APIKeyForm())


@bp.post("/")
def create():
    """Create a key and show it in this response only: it is never shown again."""
    form = APIKeyForm()
    # The key's limits come in the same form (docs/contract.md §7); an empty box sets nothing.
    policy = {
        field: value for field, value in patch_from_form(CREATE_POLICY_FIELDS).items() if value is not None
    }
    if not form.validate():
        return _page(form, 400, creating=_policy_errors(policy))
    try:
        key, secret = service.create_api_key(form.name.data, form.priority.data, current_user.user, policy)
    except ServiceError as exc:
        errors = getattr(exc, "errors", None) or {exc.field or "": exc.message}
        for field in ("name", "priority"):
            if field in errors:
                apply_error(form, ServiceError(errors.pop(field), field))
        creating = {"errors": {field: in_words(field, message) for field, message in errors.items()}}
        return _page(form, exc.status, creating=creating)
    return _page(APIKeyForm(formdata=None), 200, {"key": key, "secret": secret})


def _policy_errors(policy: dict) -> dict | None:
    """The policy boxes' errors, in words, shown with the form's own (every error at once)."""
    try:
        policy_patch.check_patch(policy, service.CREATE_CHECKS, POLICY_FIELDS)
    except policy_patch.PatchErrors as exc:
        return {"errors": {field: in_words(field, message) for field, message in exc.errors.items()}}
    return None


@bp.post("/<int:key_id>/edit")
def edit(key_id: int):
    """Change a key's name, priority, policy or end-user header in place."""
    try:
        key = service.update_api_key(key_id, patch_from_form(EDIT_FIELDS), current_user.user)
    except NotFound:
        flash("That API key does not exist.", "error")
    except ServiceError as exc:
        return _page(APIKeyForm(formdata=None), exc.status, editing=refused_edit(key_id, exc))
    else:
        flash(f"Saved the key {key.name!r}.", "success")
    return redirect(url_for("apikeys.index"))


@bp.post("/<int:key_id>/revoke")
def revoke(key_id: int):
    """Revoke a key: requests carrying it are refused from now on."""
    try:
        key = service.revoke_api_key(key_id, current_user.user)
    except NotFound:
        flash("That API key does not exist.", "error")
    else:
        flash(f"Revoked the key {key.name!r} ({key.prefix}…).", "success")
    return redirect(url_for("apikeys.index"))
