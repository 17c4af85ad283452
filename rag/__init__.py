"""教材问答: retrieval-augmented question answering over a Chinese textbook, with cited pages."""

__version__ = "0.1.0"
