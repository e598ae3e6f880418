"""Registries of named components (timm style: register / get / names); defined in the lower layer."""

from search_spaces.registry import Registry

__all__ = ["Registry"]
