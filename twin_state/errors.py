"""The one root of twinmon's own exceptions; errors carry what a person needs to act on them."""


class TwinmonError(Exception):
    """Root of every error twinmon raises on purpose."""


class CorruptTwin(TwinmonError):
    """A stored twin could not be decoded (written by an incompatible version, or damaged)."""
