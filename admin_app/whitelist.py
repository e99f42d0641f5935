"""The whitelist page: addresses and networks admitted without a key."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, url_for
from flask_login import current_user

from admin_app.forms import ActionForm, WhitelistForm, apply_error
from admin_app.identity import admin_blueprint
from admin_app.policy_form import patch_from_form, refused_edit
from admin_app.requests_log import usage_summary
from admin_app.services import NotFound, ServiceError
from admin_app.services import whitelist as service
from common.policies import LIMIT_FIELDS

bp = admin_blueprint("whitelist", __name__, "/admin/whitelist")


EDIT_FIELDS = ("label", "priority", *LIMIT_FIELDS)


def _page(form: WhitelistForm, status: int = 200, editing=None):
    entries = service.list_whitelist()
    page = render_template(
        "whitelist/index.html",
        form=form,
        entries=entries,
        action=ActionForm(),
        edit_fields=EDIT_FIELDS,
        editing=editing,
        usage=usage_summary("entry"),
    )
    return page, status


@bp.get("/")
def index():
    """List the entries, with the form to add one."""
    form = WhitelistForm()
    form.priority.data = current_app.config["SEADRAGON"].direct_priority
    return _page(form)


@bp.post("/")
def add():
    """Add an IP or CIDR; errors are shown under their fields."""
    form = WhitelistForm()
    if not form.validate():
        return _page(form, 400)
    try:
        entry = service.add_whitelist_entry(
            form.ip.data,
            form.label.data,
            form.priority.data,
            current_user.user,
            allow_everyone=form.allow_everyone.data,
        )
    except ServiceError as exc:
        apply_error(form, exc)
        return _page(form, exc.status)
    flash(f"Added {entry.ip} to the whitelist.", "success")
    return redirect(url_for("whitelist.index"))


@bp.post("/<int:entry_id>/edit")
def edit(entry_id: int):
    """Change an entry's label, priority or policy in place."""
    try:
        entry = service.update_whitelist_entry(str(entry_id), patch_from_form(EDIT_FIELDS), current_user.user)
    except NotFound:
        flash("That whitelist entry no longer exists.", "error")
    except ServiceError as exc:
        return _page(WhitelistForm(formdata=None), exc.status, editing=refused_edit(entry_id, exc))
    else:
        flash(f"Saved {entry.ip}.", "success")
    return redirect(url_for("whitelist.index"))


@bp.post("/<int:entry_id>/delete")
def remove(entry_id: int):
    """Remove an entry (the page asks for confirmation first)."""
    try:
        entry = service.remove_whitelist_entry(str(entry_id), current_user.user)
    except NotFound:
        flash("That whitelist entry no longer exists.", "error")
    else:
        flash(f"Removed {entry.ip} from the whitelist.", "success")
    return redirect(url_for("whitelist.index"))
