"""The index: vector and lexical stores behind small interfaces, the chunk table, the manifest."""
