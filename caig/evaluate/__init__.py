"""Evaluation against the synthetic world's ground truth: the reward model's Bayes ceiling (``pairs``), the
prompt model's match rate (``match``) and the simulated online A/B test (``online``). The only package besides
caig.sim that may ask the world's oracle or read its truth table."""
