"""Text processing shared by training, evaluation and the tokenizer: transcript normalization."""

from ambient.text.normalize import normalize_text, speakable_text

__all__ = ["normalize_text", "speakable_text"]
