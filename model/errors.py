"""Exceptions raised by ``model/``; the bot translates them into words at its edges."""

from __future__ import annotations


class ModelError(Exception):
    """Base class for every error raised by ``model/``."""


class InvalidInputError(ModelError, ValueError):
    """Arguments that cannot be used as given (lengths differ, unknown name, bad range)."""


class InsufficientDataError(ModelError):
    """Too few labels or classes to fit or evaluate a model."""


class NotFittedError(ModelError):
    """A classifier was used before it was fitted."""


class RegistryError(ModelError):
    """A model version is missing, unreadable or refused by the registry."""


class IntegrityError(RegistryError):
    """A model file does not match the sha256 recorded in its metadata."""
