"""The panel's forms. Rules live in the service functions; these add types and browser hints."""

from __future__ import annotations

from flask import flash
from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, PasswordField, StringField
from wtforms.validators import EqualTo, InputRequired, Length, NumberRange, Optional

from admin_app.accounts import PASSWORD_MAX, PASSWORD_MIN
from admin_app.services import NAME_MAX, PRIORITY_MAX, PRIORITY_MIN, ServiceError
from admin_app.services.tokens import NOTE_MAX, TOKEN_DAYS_DEFAULT, TOKEN_DAYS_MAX, TOKEN_DAYS_MIN

PASSWORD_LENGTH = Length(
    min=PASSWORD_MIN,
    max=PASSWORD_MAX,
    message=f"Use at least {PASSWORD_MIN} characters (at most {PASSWORD_MAX}).",
)
PRIORITY_RANGE = NumberRange(PRIORITY_MIN, PRIORITY_MAX, message="Enter a whole number from 0 to 100.")


class LoginForm(FlaskForm):
    """Sign in."""

    username = StringField("Username", validators=[InputRequired()], render_kw={"autocomplete": "username"})
    password = PasswordField(
        "Password", validators=[InputRequired()], render_kw={"autocomplete": "current-password"}
    )


class RegisterForm(FlaskForm):
    """Sign up with a registration token."""

    token = StringField("Registration token", validators=[InputRequired()], render_kw={"autocomplete": "off"})
    username = StringField(
        "Username", validators=[InputRequired(), Length(max=NAME_MAX)], render_kw={"autocomplete": "username"}
    )
    password = PasswordField(
        "Password",
        validators=[InputRequired(), PASSWORD_LENGTH],
        render_kw={"autocomplete": "new-password"},
    )


class NewPasswordForm(FlaskForm):
    """A new password, typed twice: what setting a password asks (own change, admin's reset link)."""

    new_password = PasswordField(
        "New password",
        validators=[InputRequired(), PASSWORD_LENGTH],
        render_kw={"autocomplete": "new-password"},
    )
    confirm_password = PasswordField(
        "Repeat the new password",
        validators=[InputRequired(), EqualTo("new_password", message="The two passwords differ.")],
        render_kw={"autocomplete": "new-password"},
    )


class PasswordForm(NewPasswordForm):
    """Change one's own password."""

    current_password = PasswordField(
        "Current password", validators=[InputRequired()], render_kw={"autocomplete": "current-password"}
    )


class ResetPasswordForm(NewPasswordForm):
    """Set a new password with an admin's reset link (docs/contract.md §14)."""


class WhitelistForm(FlaskForm):
    """Admit an IP address or network."""

    ip = StringField(
        "IP address or CIDR",
        validators=[InputRequired(), Length(max=64)],
        render_kw={"placeholder": "10.0.0.5 or 10.0.0.0/24 or 2001:db8::/32", "spellcheck": "false"},
    )
    label = StringField("Label", validators=[Length(max=NAME_MAX)], render_kw={"placeholder": "build server"})
    priority = IntegerField("Priority", validators=[InputRequired(), PRIORITY_RANGE])
    allow_everyone = BooleanField("Allow every address (0.0.0.0/0, ::/0)")


class TokenForm(FlaskForm):
    """Create a registration token."""

    expires_in_days = IntegerField(
        "Valid for (days)",
        default=TOKEN_DAYS_DEFAULT,
        validators=[
            InputRequired(),
            NumberRange(TOKEN_DAYS_MIN, TOKEN_DAYS_MAX, message="Enter a number of days from 1 to 365."),
        ],
    )
    note = StringField(
        "For whom",
        validators=[Optional(), Length(max=NOTE_MAX, message=f"At most {NOTE_MAX} characters.")],
    )


class APIKeyForm(FlaskForm):
    """Create an API key."""

    name = StringField(
        "Name",
        validators=[InputRequired(), Length(min=1, max=NAME_MAX)],
        render_kw={"placeholder": "invoice-bot"},
    )
    priority = IntegerField("Priority", default=5, validators=[InputRequired(), PRIORITY_RANGE])


class ActionForm(FlaskForm):
    """A button that changes state: carries only the CSRF token."""


def apply_error(form: FlaskForm, error: ServiceError) -> None:
    """Show a service's refusal under the field it names, or as a flash message."""
    field = getattr(form, error.field, None) if error.field else None
    if field is None:
        flash(error.message, "error")
        return
    prefix = f"{error.field}: "
    message = error.message[len(prefix) :] if error.message.startswith(prefix) else error.message
    field.errors = [*field.errors, message[:1].upper() + message[1:]]
