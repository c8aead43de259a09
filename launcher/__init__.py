"""The ``fate-registry`` command: a coordinator, an agent or a local federation, and demo models."""
