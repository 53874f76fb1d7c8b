"""Curation: what the log says of each reply — its sentiment and language (labels, sentiment/), people's ratings
and corrections (ratings), judges' verdicts (judges) — and the training data chosen from it."""
