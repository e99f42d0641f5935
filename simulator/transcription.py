"""OpenAI audio transcription (``POST /v1/audio/transcriptions``) as Ollama answers it.

Matched against middleware/openai.go (TranscriptionMiddleware, TranscriptionWriter): a multipart form
with ``model`` and ``file`` (``language``, ``prompt``, ``response_format`` optional), never streamed,
answered ``{"text": ...}`` or, with ``response_format=text``, the bare text as ``text/plain``. The
fake text depends only on the audio bytes.
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
from email.message import Message
from typing import Any

from simulator.engine import Plan, make_plan, run_generation
from simulator.exchange import Exchange, HTTPError
from simulator.native import require_model

FORM_LIMIT = 25 << 20  # ParseMultipartForm(25 << 20)


class TranscriptionEncoder:
    """The one answer of a transcription."""

    content_type = "application/json"

    def __init__(self, response_format: str) -> None:
        self.response_format = response_format

    def whole(self, plan: Plan) -> Any:
        """``{"text": ...}``, or the text itself for ``response_format=text``."""
        text = plan.text().strip()
        return text if self.response_format == "text" else {"text": text}


def parse_form(content_type: str, body: bytes) -> dict[str, tuple[bytes, bool]]:
    """The fields of a multipart/form-data body: name -> (value, whether it is a file)."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise HTTPError(400, "failed to parse multipart form: request Content-Type isn't multipart/form-data")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message: Message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise HTTPError(400, "failed to parse multipart form: multipart: NextPart: EOF")
    fields: dict[str, tuple[bytes, bool]] = {}
    for part in message.iter_parts():  # type: ignore[attr-defined]
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str) and name not in fields:
            payload = part.get_payload(decode=True) or b""
            fields[name] = (payload, part.get_filename() is not None)
    return fields


async def transcribe(ex: Exchange) -> None:
    """POST /v1/audio/transcriptions"""
    if len(ex.body) > FORM_LIMIT:
        raise HTTPError(400, "failed to parse multipart form: http: request body too large")
    fields = parse_form(ex.headers.get("content-type", ""), ex.body)
    model = fields.get("model", (b"", False))[0].decode("utf-8", "replace")
    if not model:
        raise HTTPError(400, "model is required")
    ex.entry["model"] = model
    audio, is_file = fields.get("file", (b"", False))
    if not is_file:
        raise HTTPError(400, "file is required: http: no such file")
    if not audio:
        raise HTTPError(400, "audio file is empty")
    require_model(ex, {"model": model})
    response_format = fields.get("response_format", (b"", False))[0].decode("utf-8", "replace")
    # The audio's bytes seed the words, so the same file always reads the same.
    plan = make_plan(ex, model, hashlib.sha256(audio).hexdigest(), False, None)
    await run_generation(ex, plan, TranscriptionEncoder(response_format))
