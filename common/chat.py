"""Web-chat conversations (docs/contract.md §9): ownership, titles, shapes, Markdown export.

Framework-free. The admin app lists, renames, deletes and exports with the
sync functions (Flask-SQLAlchemy's ``db.session``); the gateway's streaming
endpoint stores the turns with the async ones. Every lookup is by
``(conversation id, user id)``: a conversation that is not the caller's is
absent — for administrators too.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from common.models import MAX_ID, ChatMessage, Conversation, iso, utcnow

TITLE_MAX = 80  # characters of the first message kept as the title
ROLES = ("user", "assistant")
# streaming: the gateway is still writing it (docs/contract.md §14: a reply belongs to the conversation)
STATUSES = ("complete", "stopped", "error", "streaming")


class ChatError(Exception):
    """Input the chat refuses; ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def title_from(text: str) -> str:
    """A title from the first message: its first line, whitespace folded, cut at TITLE_MAX."""
    words = " ".join(text.split())
    if len(words) <= TITLE_MAX:
        return words or "New chat"
    return words[: TITLE_MAX - 1].rstrip() + "…"


def check_title(value: object) -> str:
    """A title a user typed: 1–TITLE_MAX characters after stripping, no control characters."""
    if not isinstance(value, str):
        raise ChatError("title must be a string")
    title = " ".join(value.split())
    if not 1 <= len(title) <= TITLE_MAX:
        raise ChatError(f"title must be 1 to {TITLE_MAX} characters long")
    return title


def check_id(value: object) -> int:
    """A conversation id: a positive JSON integer."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ID:
        raise ChatError("conversation_id must be a positive whole number")  # past 2^63 none exists
    return value


def check_content(value: object) -> str:
    """A user message: a non-blank string (its size is bounded by MAX_BODY, as any request's)."""
    if not isinstance(value, str) or not value.strip():
        raise ChatError("content must be a non-empty string")
    return value


def check_model(value: object) -> str | None:
    """A model name (or none yet): a string of at most 200 characters."""
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= 200:
        raise ChatError("model must be a model name (1 to 200 characters)")
    return value.strip()


def conversation_shape(conversation: Conversation) -> dict:
    """A conversation as the chat API shows it."""
    return {
        "id": conversation.id,
        "title": conversation.title,
        "model": conversation.model,
        "created_at": iso(conversation.created_at),
        "updated_at": iso(conversation.updated_at),
    }


def message_shape(message: ChatMessage) -> dict:
    """A message as the chat API shows it."""
    return {
        "id": message.id,
        "role": message.role,
        "content": message.content,
        "status": message.status,
        "error": message.error,
        "created_at": iso(message.created_at),
    }


def _owned(conversation_id: int, user_id: int) -> sa.Select:
    return sa.select(Conversation).where(Conversation.id == conversation_id, Conversation.user_id == user_id)


def _messages(conversation_id: int) -> sa.Select:
    return (
        sa.select(ChatMessage).where(ChatMessage.conversation_id == conversation_id).order_by(ChatMessage.id)
    )


# -- sync: the admin app ------------------------------------------------------


def list_conversations(session: Session, user_id: int) -> list[Conversation]:
    """The user's conversations, most recently active first."""
    query = (
        sa.select(Conversation)
        .where(Conversation.user_id == user_id)
        .order_by(Conversation.updated_at.desc(), Conversation.id.desc())
    )
    return list(session.scalars(query))


def get_conversation(session: Session, conversation_id: int, user_id: int) -> Conversation:
    """The user's own conversation; ChatError 404 for anyone else's or a missing one."""
    conversation = session.scalar(_owned(conversation_id, user_id))
    if conversation is None:
        raise ChatError("conversation not found", 404)
    return conversation


def messages_of(session: Session, conversation: Conversation) -> list[ChatMessage]:
    """A conversation's messages, oldest first."""
    return list(session.scalars(_messages(conversation.id)))


def create_conversation(session: Session, user_id: int, model: object = None) -> Conversation:
    """A new, empty conversation (titled by its first message later)."""
    now = utcnow()
    conversation = Conversation(
        user_id=user_id, title="New chat", model=check_model(model), created_at=now, updated_at=now
    )
    session.add(conversation)
    session.commit()
    return conversation


def update_conversation(session: Session, conversation: Conversation, changes: dict) -> Conversation:
    """Rename (``title``) or pick another ``model``; unknown fields are refused."""
    unknown = sorted(set(changes) - {"title", "model"})
    if unknown:
        raise ChatError(f"unknown field: {unknown[0]}")
    if "title" in changes:
        conversation.title = check_title(changes["title"])
    if "model" in changes:
        conversation.model = check_model(changes["model"])
    session.commit()
    return conversation


def delete_conversation(session: Session, conversation: Conversation) -> None:
    """Delete a conversation and its messages."""
    session.execute(sa.delete(ChatMessage).where(ChatMessage.conversation_id == conversation.id))
    session.delete(conversation)
    session.commit()


def export_markdown(conversation: Conversation, messages: list[ChatMessage]) -> str:
    """The conversation as a Markdown document: a title, then each turn under its speaker."""
    lines = [f"# {conversation.title}", ""]
    if conversation.model:
        lines += [f"Model: {conversation.model}", ""]
    for message in messages:
        speaker = "You" if message.role == "user" else "Assistant"
        note = "" if message.status == "complete" else f" ({message.status})"
        lines += [f"## {speaker}{note}", "", message.content.rstrip(), ""]
    return "\n".join(lines)


# -- async: the gateway's streaming endpoint ------------------------------------

TURNS = ("send", "regenerate", "edit")  # a new question; the last answer again; the last question changed


async def start_turn(
    session: AsyncSession,
    conversation_id: int,
    user_id: int,
    content: str | None,
    model: str,
    turn: str = "send",
) -> tuple[list[dict], int]:
    """Store the turn and a ``streaming`` answer to fill; return the history to send and the answer's id.

    ``send`` adds the user's message (titling a new conversation); ``regenerate`` drops the last
    answer and asks the last question again; ``edit`` replaces the last question (and its answer)
    with ``content``. The history is ``[{"role", "content"}, ...]`` as Ollama's ``/api/chat`` takes
    it; assistant messages that broke off with nothing said are left out.
    """
    conversation = await session.scalar(_owned(conversation_id, user_id))
    if conversation is None:
        raise ChatError("conversation not found", 404)
    stored = list(await session.scalars(_messages(conversation_id)))
    if any(message.status == "streaming" for message in stored):
        raise ChatError("an answer is still being written in this conversation: wait for it or stop it", 409)
    if turn != "send":
        last_question = max((i for i, m in enumerate(stored) if m.role == "user"), default=None)
        if last_question is None:
            raise ChatError(f"there is no question to {turn} in this conversation", 409)
        if turn == "regenerate" and last_question == len(stored) - 1:
            raise ChatError("there is no answer to regenerate: send the question again", 409)
        drop = stored[last_question + 1 :] if turn == "regenerate" else stored[last_question:]
        for message in drop:
            await session.delete(message)
        stored = [message for message in stored if message not in drop]
    history = [{"role": m.role, "content": m.content} for m in stored if m.content]
    now = utcnow()
    if turn != "regenerate":
        if content is None:
            raise ChatError("content must be a non-empty string")
        if not history:
            conversation.title = title_from(content)
        question = ChatMessage(conversation_id=conversation_id, role="user", content=content, created_at=now)
        session.add(question)
        history.append({"role": "user", "content": content})
    conversation.model = model
    conversation.updated_at = now
    answer = ChatMessage(
        conversation_id=conversation_id, role="assistant", content="", status="streaming", created_at=now
    )
    session.add(answer)
    await session.commit()
    return history, answer.id


async def store_answer(
    session: AsyncSession, message_id: int, content: str, status: str, error: str | None
) -> None:
    """Fill the ``streaming`` answer: whole, or the part that came before a stop or a failure."""
    now = utcnow()
    message = await session.get(ChatMessage, message_id)
    if message is None:
        return  # the conversation was deleted while its answer streamed: nothing to keep
    message.content, message.status, message.error = content, status, error[:500] if error else None
    await session.execute(
        sa.update(Conversation).where(Conversation.id == message.conversation_id).values(updated_at=now)
    )
    await session.commit()


async def end_orphans(session: AsyncSession) -> int:
    """Mark answers left ``streaming`` by a gateway that stopped (one instance only) as broken off."""
    result = await session.execute(
        sa.update(ChatMessage)
        .where(ChatMessage.status == "streaming")
        .values(status="error", error="the gateway restarted before the answer was finished")
    )
    await session.commit()
    return result.rowcount or 0
