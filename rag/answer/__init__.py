"""Hits → Answer: direct answers from 目录/版权页, extractive answers, the optional LLM, citations."""
