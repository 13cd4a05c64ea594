"""Research and evaluation tools: cohorts, real-data replays, charts. Never imported by the worker or the feed."""


from twin_state.errors import TwinmonError


class MissingExtra(TwinmonError, ImportError):
    """A tool needs a library of twinmon's ``evaluation`` extra, which the worker image does not install."""


def require_charts() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingExtra("charts need matplotlib, from twinmon's evaluation extra: "
                           "pip install 'twinmon[evaluation]' (make venv installs it)") from None
