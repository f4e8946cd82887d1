"""Pure conversion between the Anthropic and OpenAI dialects: no I/O here."""

from .anthropic_request import to_openai_request
from .anthropic_stream import StreamTranslator
from .openai_response import MalformedResponse, to_anthropic_message

__all__ = ["MalformedResponse", "StreamTranslator", "to_anthropic_message", "to_openai_request"]
