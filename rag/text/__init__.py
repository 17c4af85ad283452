"""Text helpers below every stage: folding and spans, sentences, numerals, the jieba tokenizer."""
