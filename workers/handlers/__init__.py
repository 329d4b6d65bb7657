"""Job handlers shipped with the engine."""
