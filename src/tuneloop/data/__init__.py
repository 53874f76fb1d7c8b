"""Bundled data: the demo's made-up product facts (training rows and held-out questions)."""
