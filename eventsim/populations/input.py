"""Input population: rates in [0, 1] (or task coordinates) held for a sample."""

from __future__ import annotations

from ..backend import array_module


class InputPopulation:
    """Holds the current sample's rates, shape (trials, size)."""

    kind = "input"

    def __init__(self, name: str, size: int, backend, trials: int) -> None:
        self.name = name
        self.size = size
        self.z = backend.zeros((trials, size))

    def set(self, x) -> None:
        """Present a new sample (in place, so readers keep their reference)."""
        self.z[...] = x

    def state(self) -> dict:
        return {"z": self.z}

    def get_state(self) -> dict:
        return self.state()

    def set_state(self, state: dict) -> None:
        self.set(array_module(self.z).asarray(state["z"]))
