"""Flask extensions, created unbound and initialised in :func:`admin_app.create_app`."""

from __future__ import annotations

from flask_login import LoginManager
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect

from common.models import Base

# db.Model is a copy of Base sharing its metadata; the models subclass Base itself.
db = SQLAlchemy(model_class=Base)
login_manager = LoginManager()
csrf = CSRFProtect()
