"""The package's version, on the ground floor so that the sidecar can name it without importing the public face
(whose type-checking imports reach the step core)."""

__version__ = "0.1.0"
