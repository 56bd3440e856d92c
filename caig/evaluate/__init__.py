"""Evaluation of the preference stage: the only package besides caig.sim that may ask the world's oracle."""
