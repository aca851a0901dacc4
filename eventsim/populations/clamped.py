"""A layer whose output is clamped to a data signal (DL §6.1).

In the reservoir test of DL §6.1 the signal Z whose third factor the reservoir
learns is given data, not the output of a trained layer. A clamped layer
(``{kind: layer, clamp: <signal>}``) stands in for that layer: at each sample
start the presenter sets its output ``z`` to the sample's value of the named
signal, held for the whole presentation. It has no dynamics, no noise, no
feed-forward input and no weights; its working memory and analytic ξ are
built like any layer's, so a reservoir learns its ξ unchanged.
"""

from __future__ import annotations


class ClampedLayer:
    """Output ``z`` (trials, size), set from the data at each sample start."""

    kind = "layer"

    def __init__(self, name: str, spec, *, backend, trials: int) -> None:
        self.name = name
        self.size = spec.size
        self.signal = spec.clamp
        self.z = backend.zeros((trials, spec.size))

    def set(self, z) -> None:
        """Hold the current sample's signal (in place, so readers keep their reference)."""
        self.z[...] = z

    def step(self) -> None:
        """Nothing to integrate: the output is the held signal."""

    def state(self) -> dict:
        return {"z": self.z}
