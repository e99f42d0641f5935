"""The web chat's page and its conversation API (docs/contract.md §9).

``/chat`` is the page; ``/chat/api/conversations[...]`` lists, creates,
reads, renames, deletes and exports the signed-in user's conversations.
State-changing calls need Flask-WTF's CSRF token in ``X-CSRFToken``. The
answers themselves stream from the gateway (``proxy_app.chat_stream``).
"""

from __future__ import annotations

from flask import Blueprint, Response, redirect, render_template, request, url_for
from flask_login import current_user

from admin_app.extensions import db
from common import chat

bp = Blueprint("chat", __name__, url_prefix="/chat")


@bp.errorhandler(chat.ChatError)
def chat_error(exc: chat.ChatError):
    """A refused chat call as ``{"error": ...}`` with its status."""
    return {"error": exc.message}, exc.status


@bp.before_request
def signed_in_only():
    """The page sends strangers to the login page; the API answers them 401."""
    if current_user.is_authenticated:
        return None
    if request.path.startswith("/chat/api/"):
        return {"error": "sign in to use the chat"}, 401
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


@bp.get("")
def page():
    """The chat page; the script loads conversations and models from the APIs."""
    return render_template("chat/index.html")


def _body() -> dict:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise chat.ChatError("expected a JSON object")
    return data


def _own(conversation_id: int):
    return chat.get_conversation(db.session, conversation_id, current_user.id)


@bp.get("/api/conversations")
def conversations_list():
    """The user's conversations, most recently active first."""
    return [chat.conversation_shape(c) for c in chat.list_conversations(db.session, current_user.id)]


@bp.post("/api/conversations")
def conversations_create():
    """Start a conversation ``{"model"?}`` → 201 with it."""
    data = request.get_json(silent=True) if request.content_length else {}
    if not isinstance(data, dict):
        raise chat.ChatError("expected a JSON object")
    conversation = chat.create_conversation(db.session, current_user.id, data.get("model"))
    return chat.conversation_shape(conversation), 201


@bp.get("/api/conversations/<int:conversation_id>")
def conversations_read(conversation_id: int):
    """One conversation with its messages (404 unless it is the caller's)."""
    conversation = _own(conversation_id)
    messages = chat.messages_of(db.session, conversation)
    return {**chat.conversation_shape(conversation), "messages": [chat.message_shape(m) for m in messages]}


@bp.patch("/api/conversations/<int:conversation_id>")
def conversations_update(conversation_id: int):
    """Rename it (``title``) or change its ``model``."""
    conversation = chat.update_conversation(db.session, _own(conversation_id), _body())
    return chat.conversation_shape(conversation)


@bp.delete("/api/conversations/<int:conversation_id>")
def conversations_delete(conversation_id: int):
    """Delete it with its messages."""
    chat.delete_conversation(db.session, _own(conversation_id))
    return {"deleted": conversation_id}


@bp.get("/api/conversations/<int:conversation_id>/export")
def conversations_export(conversation_id: int):
    """The conversation as a Markdown file download."""
    conversation = _own(conversation_id)
    text = chat.export_markdown(conversation, chat.messages_of(db.session, conversation))
    filename = f"conversation-{conversation.id}.md"
    return Response(
        text,
        mimetype="text/markdown",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
