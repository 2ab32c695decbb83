"""What every building block shares: its components by name, and Dapr's lookup errors."""

from __future__ import annotations

from typing import ClassVar, Generic, TypeVar

from building_blocks.component import Component, ComponentContext
from building_blocks.errors import ComponentNotConfigured, ComponentNotFound

__all__ = ("Block",)

C = TypeVar("C", bound=Component)


class Block(Generic[C]):
    """The loaded components of one block. Subclasses add the block's API on top.

    ``kind`` names the components in errors ("state store"); ``component_base`` is the class every
    component of the block derives from; ``type_prefix`` is the block part of Dapr type strings.
    """

    kind: ClassVar[str]
    type_prefix: ClassVar[str]
    component_base: ClassVar[type[Component]]

    def __init__(self, context: ComponentContext) -> None:
        self.context = context
        self.components: dict[str, C] = {}

    def add(self, component: C, where: str) -> None:
        """Register a constructed (not yet initialised) component; raise ``SpecError`` for bad settings."""
        self.components[component.name] = component

    def remove(self, name: str) -> None:
        self.components.pop(name, None)

    def component(self, name: str) -> C:
        found = self.components.get(name)
        if found is None:
            if not self.components:
                raise ComponentNotConfigured(self.kind, name)
            raise ComponentNotFound(self.kind, name)
        return found
