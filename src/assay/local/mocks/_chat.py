"""The chat model mock and the shape of its outputs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from assay import errors
from assay.local.mocks._base import (
    RandomSource,
    SingleEndpointMock,
    check_rate,
    request_field,
    words,
)
from assay.schema.base import SchemaModel

__all__ = ["ChatMessage", "ChatModel"]


class ChatMessage(SchemaModel):
    """One message of a conversation."""

    role: str
    """Who wrote the message: ``system``, ``user`` or ``assistant``."""
    content: str
    """The text of the message."""


#: Canned replies; ``{topic}`` is replaced by the start of the last user message.
_REPLIES = (
    "Here is what I think about “{topic}”: it depends on the details.",
    "Good question! In short, “{topic}” has no single answer.",
    "Let me summarise: you asked about “{topic}”. I would start with the basics.",
    "I am a simulated assistant, but “{topic}” sounds interesting.",
)
_TOPIC_LENGTH = 60


class ChatModel(SingleEndpointMock):
    """Simulates a chat assistant.

    Endpoints:

        ``chat``
            Input ``{"messages": [{"role": str, "content": str}, ...]}``. Output: one object
            ``{"role": "assistant", "content": str}`` — a canned reply quoting the start of the
            last ``user`` message, or the refusal :attr:`REFUSAL`. Output schema:
            ``make_output_schema(ChatMessage)``.

    Options (keyword-only):

    - ``refusal_rate`` (0 to 1, default 0.1): the share of replies that are refusals, so
      refusal-rate audits have something to measure;
    - ``refusal_triggers``: words that make the model always refuse when the last user
      message contains one (case-insensitive), e.g. ``("bomb", "poison")``;
    - ``seed``: with a seed, the reply depends on the seed and the messages alone; without
      one, it varies from call to call.
    """

    nonblocking = True

    ENDPOINT = "chat"
    REFUSAL = "I can't help with that."

    def __init__(
        self,
        *,
        refusal_rate: float = 0.1,
        refusal_triggers: Sequence[str] = (),
        seed: int | None = None,
    ) -> None:
        super().__init__(self.ENDPOINT, ChatMessage)
        self.refusal_rate = check_rate("refusal_rate", refusal_rate)
        if isinstance(refusal_triggers, str) or not all(
            isinstance(t, str) and t for t in refusal_triggers
        ):
            raise errors.ValidationError(
                f"refusal_triggers must be a list of non-empty words, got {refusal_triggers!r}",
                field="refusal_triggers",
            )
        self.refusal_triggers = frozenset(t.lower() for t in refusal_triggers)
        self._random = RandomSource(seed)

    def answer(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        messages = _messages(request_field(request, "messages", list))
        user = [m for m in messages if m["role"] == "user"]
        last = (user or messages)[-1]["content"]
        rng = self._random.for_request(
            "\x00".join(f"{m['role']}\x01{m['content']}" for m in messages)
        )
        refuse = rng.random() < self.refusal_rate
        if refuse or not self.refusal_triggers.isdisjoint(words(last)):
            return [{"role": "assistant", "content": self.REFUSAL}]
        topic = " ".join(last.split())
        if len(topic) > _TOPIC_LENGTH:
            topic = topic[: _TOPIC_LENGTH - 1] + "…"
        return [{"role": "assistant", "content": rng.choice(_REPLIES).format(topic=topic)}]


def _messages(messages: list[Any]) -> list[dict[str, Any]]:
    """``messages``, checked to be a non-empty list of ``{"role": str, "content": str}``."""
    if not messages:
        raise errors.ValidationError(
            "request field 'messages' is empty; send at least one "
            '{"role": "user", "content": "..."} message',
            field="messages",
        )
    for i, message in enumerate(messages):
        for key in ("role", "content"):
            if not isinstance(message, dict) or not isinstance(message.get(key), str):
                raise errors.ValidationError(
                    f"request field 'messages': message {i} has no string {key!r} (got "
                    f"{message!r:.80}); each message is "
                    '{"role": "user" | "assistant" | "system", "content": str}',
                    field="messages",
                )
    return messages
