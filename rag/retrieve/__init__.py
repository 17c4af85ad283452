"""Question → ranked Hits: question preparation (cleaning, follow-ups) and hybrid retrieval."""
