"""The embedded platform: ``from assay.local import LocalPlatform``."""

from assay.local.platform import LocalPlatform

__all__ = ["LocalPlatform"]
