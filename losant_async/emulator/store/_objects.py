"""The store's applications and devices: creating, finding, removing, and checking their declarations."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ...errors import ValidationError
from ._base import StoreBase
from ._records import (
    ATTRIBUTE_NAME,
    DATA_TYPES,
    DEVICE_CLASSES,
    ID_PATTERN,
    ApplicationRecord,
    AttributeRecord,
    DeviceRecord,
    UnknownObjectError,
    new_id,
)

__all__ = ["ObjectStore"]


class ObjectStore(StoreBase):
    """Applications and devices, with the device relations (gateways reporting for peripherals)."""

    # -- provisioning ------------------------------------------------------------------------

    def add_application(
        self, name: str, *, description: str = "", owner_id: str | None = None, id: str | None = None
    ) -> ApplicationRecord:
        """Create an application (with ``id`` when given, else a new one); ValidationError when the
        name is not 1 to 255 characters."""
        if not isinstance(name, str) or not name or len(name) > 255:
            raise ValidationError("application name must be 1 to 255 characters")
        now = self.clock()
        app = ApplicationRecord(self.fresh_id(id, self.applications), name, description, owner_id, now, now)
        self.applications[app.id] = app
        return app

    def application(self, application_id: str) -> ApplicationRecord:
        """The application with this id; UnknownObjectError when there is none."""
        app = self.applications.get(application_id)
        if app is None:
            raise UnknownObjectError("Application was not found")
        return app

    def add_device(
        self,
        application_id: str,
        name: str,
        *,
        device_class: str = "standalone",
        parent_id: str | None = None,
        attributes: Mapping[str, str] | Iterable[Mapping[str, Any]] | None = None,
        tags: Mapping[str, str] | Iterable[Mapping[str, str]] | Iterable[tuple[str, str]] | None = None,
        description: str = "",
        id: str | None = None,
    ) -> DeviceRecord:
        """Create a device in an application (with ``id`` when given), its attributes and tags checked."""
        self.application(application_id)
        if not isinstance(name, str) or not name or len(name) > 255:
            raise ValidationError("device name must be 1 to 255 characters")
        if device_class not in DEVICE_CLASSES:
            raise ValidationError(f"device class must be one of {', '.join(DEVICE_CLASSES)}, not {device_class!r}")
        if parent_id is not None:
            parent = self.devices.get(parent_id)
            if parent is None or parent.application_id != application_id:
                raise ValidationError(f"parent device {parent_id} is not in this application")
        if device_class == "peripheral" and parent_id is None:
            raise ValidationError("a peripheral needs parent_id: the gateway that reports for it")
        now = self.clock()
        device = DeviceRecord(
            id=self.fresh_id(id, self.devices),
            application_id=application_id,
            name=name,
            device_class=device_class,
            parent_id=parent_id,
            tags=self.parse_tags(tags),
            attributes=self.parse_attributes(attributes),
            created=now,
            updated=now,
            description=description,
        )
        self.devices[device.id] = device
        self.series.create(device.id)
        return device

    @staticmethod
    def fresh_id(given: str | None, taken: Mapping[str, Any]) -> str:
        """``given`` when it is a free 24-hex id (ValidationError otherwise), else a new id."""
        if given is None:
            return new_id()
        if not isinstance(given, str) or not ID_PATTERN.match(given):
            raise ValidationError(f"id {given!r} is not 24 hex characters")
        if given in taken:
            raise ValidationError(f"id {given} is taken")
        return given

    def device(self, device_id: str, application_id: str | None = None) -> DeviceRecord:
        """The device with this id (in this application, when given); UnknownObjectError when there is none."""
        device = self.devices.get(device_id)
        if device is None or (application_id is not None and device.application_id != application_id):
            raise UnknownObjectError("Device was not found")
        return device

    def remove_device(self, device_id: str) -> None:
        """Forget the device and its history."""
        self.devices.pop(device_id, None)
        self.series.drop(device_id)

    def remove_application(self, application_id: str) -> list[str]:
        """Forget the application with its devices, keys and tokens; returns the removed device ids."""
        self.applications.pop(application_id, None)
        gone = [d.id for d in self.devices.values() if d.application_id == application_id]
        for device_id in gone:
            self.remove_device(device_id)
        for key in [k for k, r in self.keys.items() if r.application_id == application_id]:
            del self.keys[key]
        for token in [t for t, r in self.tokens.items() if r.application_id == application_id]:
            del self.tokens[token]
        return gone

    @staticmethod
    def parse_attributes(attributes: Mapping[str, str] | Iterable[Mapping[str, Any]] | None) -> dict[str, AttributeRecord]:
        """Check attribute declarations (name -> data type, or Losant's list of dicts)."""
        out: dict[str, AttributeRecord] = {}
        if attributes is None:
            return out
        items: Iterable[Mapping[str, Any]]
        if isinstance(attributes, Mapping):
            items = [{"name": k, "dataType": v} for k, v in attributes.items()]
        else:
            items = attributes
        for item in items:
            if not isinstance(item, Mapping):
                raise ValidationError("each attribute must be an object with name and dataType")
            attr = ObjectStore.parse_attribute(item)
            out[attr.name] = attr
        return out

    @staticmethod
    def parse_attribute(item: Mapping[str, Any]) -> AttributeRecord:
        """Check one attribute declaration in Losant's dict form."""
        name = item.get("name")
        data_type = item.get("dataType")
        if not isinstance(name, str) or not ATTRIBUTE_NAME.match(name):
            raise ValidationError(f"attribute name {name!r} must match {ATTRIBUTE_NAME.pattern}")
        if data_type not in DATA_TYPES:
            raise ValidationError(f"attribute {name} dataType must be one of {', '.join(DATA_TYPES)}")
        tags = item.get("attributeTags") or {}
        return AttributeRecord(
            name=name,
            data_type=data_type,
            description=str(item.get("description", "")),
            content_type=item.get("contentType"),
            attribute_tags=dict(tags) if isinstance(tags, Mapping) else {},
        )

    @staticmethod
    def parse_tags(
        tags: Mapping[str, str] | Iterable[Mapping[str, str]] | Iterable[tuple[str, str]] | None,
    ) -> list[tuple[str, str]]:
        """Check tags given as a mapping, Losant's list of dicts or key/value pairs."""
        if tags is None:
            return []
        pairs: list[tuple[str, str]] = []
        if isinstance(tags, Mapping):
            pairs = [(k, v) for k, v in tags.items()]
        else:
            for item in tags:
                if isinstance(item, Mapping):
                    pairs.append((item.get("key"), item.get("value")))  # type: ignore[arg-type]
                elif isinstance(item, tuple) and len(item) == 2:
                    pairs.append(item)
                else:
                    raise ValidationError("each tag must be {key, value}")
        for key, value in pairs:
            if not isinstance(key, str) or not ATTRIBUTE_NAME.match(key):
                raise ValidationError(f"tag key {key!r} must match {ATTRIBUTE_NAME.pattern}")
            if not isinstance(value, str) or not 1 <= len(value) <= 255:
                raise ValidationError(f"tag {key} value must be a string of 1 to 255 characters")
        return pairs

    # -- device relations --------------------------------------------------------------------

    def reports_for(self, reporter: DeviceRecord, device_id: str) -> bool:
        """Whether ``reporter`` may publish state / receive commands for ``device_id``: itself,
        or, for a gateway, a peripheral below it."""
        if device_id == reporter.id:
            return True
        if reporter.device_class != "gateway":
            return False
        device = self.devices.get(device_id)
        if device is None or device.device_class != "peripheral" or device.application_id != reporter.application_id:
            return False
        seen: set[str] = set()
        parent = device.parent_id
        while parent is not None and parent not in seen:
            if parent == reporter.id:
                return True
            seen.add(parent)
            node = self.devices.get(parent)
            parent = node.parent_id if node is not None else None
        return False
