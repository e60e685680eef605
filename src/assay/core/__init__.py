"""The platform core: the behaviour of every API group (DESIGN §2)."""

from assay.core.platform import PlatformCore

__all__ = ["PlatformCore"]
