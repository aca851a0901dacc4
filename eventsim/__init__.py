"""eventsim: event-driven simulation of three-factor learning.

Public API: :func:`load_network`, :func:`load_scenario`, :class:`Simulator`
(``run(until)``, ``probe(target)``), :func:`run` (a scenario into a run
directory, returning a :class:`~eventsim.api.Run`) and :func:`resume` (continue
a stopped run from its checkpoint).
"""

__version__ = "0.1.0"

from .api import Run, resume, run  # noqa: E402
from .config.network import load_network  # noqa: E402
from .config.scenario import load_scenario  # noqa: E402
from .engine.simulator import Simulator  # noqa: E402

__all__ = ["Run", "Simulator", "__version__", "load_network", "load_scenario", "resume",
           "run"]
