"""The synthetic click world: products, background phrases, an ad renderer, the ground-truth oracle and
a click-log generator (docs/synthetic-world.md). The oracle lives in ``caig.sim.oracle`` and is not
imported here, so training code can use the vocabulary, world and renderer without touching the truth.
"""
