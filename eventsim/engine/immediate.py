"""Zero-delay analytic modulation applied in the tick that computes it (``numba`` backend).

On the general path a layer's analytic ξ travels through the engine's stages:
the layer sends it in POPULATION, its channel puts it into the synapses' empty
inbox in DELIVER (``0 + ξ = ξ`` exactly), and PLASTICITY applies DL Eq. 8 with
the instant eligibility ``e = β`` of the same tick,

``ΔW = −η (ξ ⊙ (1 − z²)) zpreᵀ``   (with momentum ``v ← μ v + ΔW``, ``W ← W + v``).

When the channel has no delay, jitter or loss, nothing happens in between that
the update could see or change: later layers read the layer's ``z``, not its
``W``, and probes run after PLASTICITY. :class:`ImmediateModulation` therefore
applies the update right after the layer steps, with the same compiled kernels
on the same numbers, so the weights agree bit for bit with the general path,
without the per-tick Python of the channel queue, the inbox and the synapse
stage. The channel still records every send, so its records are unchanged.
"""

from __future__ import annotations


def applies(channel, synapses, rule, backend, modulator: str) -> bool:
    """Whether ``channel`` into ``synapses`` can take the immediate path.

    It needs the compiled kernels, the analytic ξ of DL Eq. 8 or ξ*, a channel
    that delivers every message in the tick it is sent to every trial, and the
    instant eligibility ``e = β`` (no trace, no window)."""
    return (backend.kernels is not None and modulator == "analytic"
            and rule.form in ("paper", "exact") and channel.delay == 0
            and not channel.random and synapses.instant_compiled)


class ImmediateModulation:
    """Send and apply one layer's analytic ξ in the POPULATION stage (module docstring)."""

    def __init__(self, source, channel, synapses) -> None:
        self.source = source
        """The layer's :class:`~eventsim.engine.simulator.AnalyticXi`."""
        self.channel = channel
        self.synapses = synapses

    def __call__(self, tick: int, phase: int) -> None:
        """ξ at ``phase`` of the sample, recorded as sent at ``tick`` and applied at once."""
        self.channel.record_send(tick)
        self.synapses.apply_instant(self.source(phase), tick)
