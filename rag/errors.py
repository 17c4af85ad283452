"""Domain errors. The library raises them; only the CLI and the app turn them into user messages.

Every message is in Chinese, names the bad file or value, and says what to do.
"""

from __future__ import annotations

REBUILD_COMMAND = "make index"  # equivalently: .venv/bin/python -m rag build


class RagError(Exception):
    """Base class of every error this project raises on purpose."""


class InputError(RagError):
    """The user's question (or a CLI argument) cannot be used as given."""


class CorpusError(RagError):
    """A corpus file or folder cannot be read."""


class ModelError(RagError):
    """The embedding model cannot be provisioned or loaded."""


class IndexError_(RagError):
    """Base of index problems (named with a trailing underscore to keep the builtin IndexError intact)."""


class IndexMissingError(IndexError_):
    """No index at the configured place."""


class IndexCorruptError(IndexError_):
    """An index file is truncated, unreadable or inconsistent with the manifest."""


class IndexMismatchError(IndexError_):
    """The index was built with another model, other settings or another corpus."""


class BuildError(RagError):
    """A build could not write the new index (full disk, no permission); the previous index is untouched."""


class LLMError(RagError):
    """The configured LLM endpoint failed (timeout, HTTP error, malformed stream)."""
