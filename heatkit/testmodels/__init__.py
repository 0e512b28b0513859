"""Builders of the test models, whose right answers are known: the center-pixel model, the
center-pixel CNN and the digits CNN (create_model.py)."""
