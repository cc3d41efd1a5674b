"""An OpenAI-compatible gateway in front of LLM providers and self-hosted vLLM pools."""

__version__ = "0.1.0"
