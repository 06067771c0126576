"""Exceptions that carry a message meant for the person running the function."""


class WeightsError(RuntimeError):
    """A weights file is missing, truncated, corrupt or does not fit the model it is loaded into."""
