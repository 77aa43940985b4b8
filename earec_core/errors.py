"""Exceptions raised by EARec. Every error a user can cause derives from :class:`EarecError`,
so the CLI can print it as one line saying what to fix instead of a traceback."""


class EarecError(Exception):
    """Base class for errors caused by input, configuration or plugins (not bugs)."""


class DataError(EarecError):
    """A dataset file is missing, malformed, or filters down to nothing."""


class ModalityNotFound(EarecError):
    """A modality name was asked for that no loaded plugin registers."""


class RecommenderNotFound(EarecError):
    """A recommender name was asked for that no loaded plugin registers."""


class PluginError(EarecError):
    """A plugin registered something invalid (duplicate name, wrong type)."""


class ArtifactError(EarecError):
    """A run artifact (adapter, projector, embeddings) is missing, stale or incompatible."""


class CompositionError(EarecError):
    """Adapters cannot be composed as asked (weights, ranks, base models)."""
