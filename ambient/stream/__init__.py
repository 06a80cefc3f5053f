"""One utterance at a time: audio in, partial and final hypotheses out."""
