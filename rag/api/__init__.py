"""The HTTP API (`python -m rag api`, FastAPI) and the MCP server (`python -m rag mcp`) over the one shared,
read-only Pipeline: the same questions, answers and JSON shapes (rag/schema.py) as the CLI and the page.

Imports point down only: this package uses rag.pipeline, rag.schema, rag.render and rag.types; nothing under
rag/ imports it except the `api` and `mcp` commands.
"""
