"""eventsim: event-driven simulation of three-factor learning."""

__version__ = "0.1.0"
