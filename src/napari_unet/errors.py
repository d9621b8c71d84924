"""The one exception type for problems a user can fix."""


class NapariUnetError(ValueError):
    """A problem with the user's input, stated in one plain sentence.

    The CLI prints its message without a traceback and the GUI shows it as a
    napari notification. It subclasses :class:`ValueError` so that code which
    already catches ``ValueError`` keeps working.
    """
