"""Model profiles (docs/contract.md §12): set, read and remove, each change audited."""

from __future__ import annotations

import sqlalchemy as sa

from admin_app.extensions import db
from admin_app.services import NotFound, ServiceError
from admin_app.services.audit import record
from common.model_profiles import ModelProfile, ProfileError, validate_profile
from common.models import ModelProfileRow, User
from common.policies import PATTERN_CHARS, PATTERN_MAX_LENGTH, normalise_model_name

FIELDS = ("load_options", "keep_alive", "keep_alive_min", "keep_alive_max", "max_parallel")


def model_name(raw: object) -> str:
    """The normalised model name a profile is stored under (``llama3.2`` → ``llama3.2:latest``)."""
    if not isinstance(raw, str) or not raw.strip() or "*" in raw:
        raise ServiceError("model must be a model name such as llama3.2 or qwen2.5:7b", "model")
    text = raw.strip()
    if len(text) > PATTERN_MAX_LENGTH or not PATTERN_CHARS.fullmatch(text):
        raise ServiceError(f"model: {text[:40]!r} is not a model name (letters, digits, . _ : / -)", "model")
    return normalise_model_name(text)


def profile_of(row: ModelProfileRow) -> ModelProfile:
    """A stored row as a profile."""
    return validate_profile({field: getattr(row, field) for field in FIELDS})


def profile_json(model: str, profile: ModelProfile) -> dict:
    """The admin API's shape of a profile: the model and its fields."""
    return {"model": model} | profile.as_json()


def get_profile(raw_model: object) -> ModelProfileRow | None:
    """A model's stored profile, if it has one."""
    return db.session.get(ModelProfileRow, model_name(raw_model))


def list_profiles() -> list[ModelProfileRow]:
    """Every stored profile, by model name."""
    return list(db.session.scalars(sa.select(ModelProfileRow).order_by(ModelProfileRow.model)))


def set_profile(raw_model: object, data: dict, actor: User) -> tuple[str, ModelProfile]:
    """Store the whole profile of a model (fields not given are unset); 400 naming a bad field."""
    model = model_name(raw_model)
    try:
        profile = validate_profile(data)
    except ProfileError as exc:
        raise ServiceError(str(exc), exc.field) from None
    values = profile.as_json()
    row = db.session.get(ModelProfileRow, model)
    if row is None:
        row = ModelProfileRow(model=model)
        old = dict.fromkeys(FIELDS)
        db.session.add(row)
    else:
        old = profile_of(row).as_json()
    for field, value in values.items():
        setattr(row, field, value)
    changes = {field: [old[field], value] for field, value in values.items() if old[field] != value}
    record(actor, "model_profile.update", f"model:{model}", changes)
    db.session.commit()
    return model, profile


def delete_profile(raw_model: object, actor: User) -> tuple[str, ModelProfile]:
    """Remove a model's profile (it then follows LOAD_OPTIONS and KEEP_ALIVE_*); 404 if it has none."""
    model = model_name(raw_model)
    row = db.session.get(ModelProfileRow, model)
    if row is None:
        raise NotFound(f"model {model} has no profile")
    profile = profile_of(row)
    db.session.delete(row)
    record(actor, "model_profile.delete", f"model:{model}", profile.as_json())
    db.session.commit()
    return model, profile
