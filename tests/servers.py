"""Real local servers for tests (re-exported from evalkit so the pipeline uses the same code)."""
from evalkit.backends.serve import free_port, transformers_serve  # noqa: F401
