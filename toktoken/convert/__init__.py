"""Pure conversion between the Anthropic and OpenAI dialects: dicts in, dicts
out, streams as small state machines (protocol.py). No I/O here.

Owns: requests each way (anthropic_request, openai_request), responses each
way (openai_response, anthropic_response, openai_completion), the four stream
machines (anthropic_stream, anthropic_passthrough, openai_stream), and what
they share (common, thinking, tool_json, text_tools + tool_markup, quirks,
protocol).

May import: errors, and nothing else of the project.
"""

from .anthropic_passthrough import AnthropicPassthrough
from .anthropic_request import to_openai_request
from .anthropic_response import to_openai_completion
from .anthropic_stream import StreamTranslator
from .common import completion_as_chunks
from .openai_completion import for_openai_client
from .openai_request import for_openai_backend, to_anthropic_request
from .openai_response import MalformedResponse, to_anthropic_message
from .openai_stream import AnthropicToOpenAIStream, OpenAIPassthrough
from .protocol import Phase, StreamMachine, Usage
from .quirks import apply_quirks
from .text_tools import ToolCall, ToolCallRescuer

__all__ = [
    "AnthropicPassthrough",
    "AnthropicToOpenAIStream",
    "MalformedResponse",
    "OpenAIPassthrough",
    "Phase",
    "StreamMachine",
    "StreamTranslator",
    "ToolCall",
    "ToolCallRescuer",
    "Usage",
    "apply_quirks",
    "completion_as_chunks",
    "for_openai_backend",
    "for_openai_client",
    "to_anthropic_message",
    "to_anthropic_request",
    "to_openai_completion",
    "to_openai_request",
]
