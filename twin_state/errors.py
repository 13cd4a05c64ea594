"""The one root of twinmon's own exceptions; errors carry what a person needs to act on them."""


class TwinmonError(Exception):
    """Root of every error twinmon raises on purpose."""


class CorruptRecord(TwinmonError):
    """A stored record could not be decoded (written by an incompatible version, or damaged)."""


class CorruptTwin(CorruptRecord):
    """A stored twin could not be decoded."""


class CorruptProfile(CorruptRecord):
    """A stored enrolment profile could not be decoded."""


class CorruptAlertState(CorruptRecord):
    """A stored alert state could not be decoded."""
