"""The ``twinmon`` command line (click): each command builds what it needs from ``streams``, ``feed``,
``evaluation``, ``simulation`` or ``bench``, imported when the command runs."""
