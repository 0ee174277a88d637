"""Prints, as JSON, every payload of the wire protocol as the Python side sends it: for each dataclass, its JSON
keys (camelCase, including the derived ones its to_dict/to_wire_dict adds) with their kind and whether they can be
null; and the bounds to_wire cuts strings to. tests/extension/unit/protocol.test.ts compares this with the checkers of
extension/src/protocol.ts."""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from typing import Any

from crashguard.guard import cleanup
from crashguard.sidecar import handshake, protocol, settings

SCALARS = {int: "integer", float: "number", str: "string", bool: "boolean"}


def kind(annotation: Any) -> dict[str, Any]:
    """{"kind", "nullable", "of"?, "name"?} of a type annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(members) < len(typing.get_args(annotation))
        if len(members) == 1:
            return {**kind(members[0]), "nullable": nullable or kind(members[0])["nullable"]}
        return {"kind": "object", "nullable": nullable, "name": " | ".join(m.__name__ for m in members)}
    if annotation in SCALARS:
        return {"kind": SCALARS[annotation], "nullable": False}
    if origin in (list, tuple):
        return {"kind": "array", "nullable": False, "of": kind(typing.get_args(annotation)[0])}
    if origin is dict or annotation is dict:
        return {"kind": "record", "nullable": False}
    if dataclasses.is_dataclass(annotation):
        return {"kind": "object", "nullable": False, "name": annotation.__name__}
    return {"kind": "any", "nullable": True}


def dummy(annotation: Any) -> Any:
    """A value of the annotated type, to call to_dict/to_wire_dict on an instance (only its keys are used)."""
    info = kind(annotation)
    return None if info["nullable"] else {"integer": 0, "number": 0.0, "string": "", "boolean": False,
                                          "array": [], "record": {}}.get(info["kind"])


def fields(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    out = {protocol.camel(f.name): kind(hints[f.name]) for f in dataclasses.fields(cls)}
    wire = getattr(cls, "to_wire_dict", None) or getattr(cls, "to_dict", None)
    if wire is not None:  # derived keys (freed, rssFreed, ...) are properties
        instance = cls(**{f.name: dummy(hints[f.name]) for f in dataclasses.fields(cls) if f.init})
        for key in wire(instance):
            name = protocol.camel(key)
            if name not in out:
                prop = getattr(cls, key)
                out[name] = kind(typing.get_type_hints(prop.fget)["return"])
    return out


def main() -> int:
    classes: dict[str, type] = {}
    for module in (protocol, cleanup):
        for value in vars(module).values():
            if isinstance(value, type) and dataclasses.is_dataclass(value):
                classes[value.__name__] = value
    payloads = {name: fields(cls) for name, cls in classes.items()}
    announced = handshake.announcement()["crashGuard"]
    payloads["Announcement"] = {key: kind(type(value)) for key, value in announced.items()}
    print(json.dumps({"protocolVersion": handshake.PROTOCOL_VERSION, "payloads": payloads,
                      "settings": sorted(settings.FIELDS),
                      "textLimits": {"keys": protocol.TEXT_LIMITS, "other": protocol.MAX_TEXT}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
