"""Evaluation on question sets: retrieval and answer metrics by question type."""
