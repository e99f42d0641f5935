"""A user's own usage, limits and what is left today (docs/contract.md §14), for ``/account``.

Counts the request-log rows of the user's web chat and of all the user's personal keys (both
carry the user's id), and only inference requests: the chat page's model list and the other
metadata calls a page makes are not usage.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from common.models import RequestLog, User, utcnow
from common.policies import Policy, effective_user_policy
from common.routes import INFERENCE_ENDPOINTS
from common.settings import Settings

DAY, WEEK = timedelta(hours=24), timedelta(days=7)


def inference_usage(session: Session, user_id: int, since: datetime) -> dict[str, int]:
    """``requests``, ``prompt_tokens``, ``completion_tokens`` and ``gpu_seconds`` (docs/contract.md §13)
    of the user's inference since ``since``."""
    requests, prompt, completion, gpu_ms = session.execute(
        sa.select(
            sa.func.count(RequestLog.id),
            sa.func.coalesce(sa.func.sum(RequestLog.prompt_tokens), 0),
            sa.func.coalesce(sa.func.sum(RequestLog.completion_tokens), 0),
            sa.func.coalesce(sa.func.sum(RequestLog.gpu_ms), 0),
        ).where(
            RequestLog.user_id == user_id,
            RequestLog.created_at >= since,
            RequestLog.endpoint.in_(sorted(INFERENCE_ENDPOINTS)),
        )
    ).one()
    return {
        "requests": int(requests),
        "prompt_tokens": int(prompt),
        "completion_tokens": int(completion),
        "gpu_seconds": round(float(gpu_ms) / 1000, 3),
    }


def user_limits(user: User, settings: Settings) -> dict[str, Any]:
    """The user's policy as it applies (unset fields take ``WEBCHAT_*``); ``None`` is no limit."""
    policy = effective_user_policy(Policy.of(user), settings)
    return {
        "models": list(policy.models) or None,
        "rpm": policy.rpm,
        "max_queued": policy.max_queued,
        "max_concurrent": policy.max_concurrent,
        "daily_tokens": policy.daily_tokens,
        "daily_gpu_seconds": policy.daily_gpu_seconds,
    }


def own_usage(
    session: Session, user: User, settings: Settings, now: datetime | None = None
) -> dict[str, Any]:
    """``{"day", "week", "limits", "remaining"}`` of ``user``; ``remaining`` is null where unlimited."""
    now = now or utcnow()
    day = inference_usage(session, user.id, now - DAY)
    week = inference_usage(session, user.id, now - WEEK)
    limits = user_limits(user, settings)
    used_tokens = day["prompt_tokens"] + day["completion_tokens"]
    daily_tokens = limits["daily_tokens"]
    daily_gpu = limits["daily_gpu_seconds"]
    remaining = {
        "daily_tokens": None if daily_tokens is None else max(0, daily_tokens - used_tokens),
        "daily_gpu_seconds": None
        if daily_gpu is None
        else round(max(0.0, daily_gpu - day["gpu_seconds"]), 3),
    }
    return {"day": day, "week": week, "limits": limits, "remaining": remaining}
