"""Corpus files → Documents: text/Markdown/PDF readers, page labels, layout, front matter (目录, 版权页)."""
