"""The one base class of every error a user causes and can fix: a missing or malformed dataset,
config, checkpoint or class file, an output that cannot be written, a run folder in use.

Each module keeps its own subclass, named for what went wrong, whose message names the file,
field or value (``DatasetError``, ``ConfigError``, ``CheckpointError``, ``ClassFileError``,
``WeightsNotFound``, ``TrainingError``, ``RunLockError``, ``CLIError``). Those that were
``ValueError``s (or ``FileNotFoundError``, ``RuntimeError``) stay so as a second base, so an
``except ValueError`` written before this module still catches them.

``sgma`` (engine/cli.py) turns exactly these into ``error: <message>`` and exit status 2; any
other exception is a bug and keeps its traceback. This module imports nothing, so every layer
may raise these."""


class SGMAError(Exception):
    """A problem with the user's input or environment; the message says what and where."""
