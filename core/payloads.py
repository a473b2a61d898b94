"""Workflow payloads as pydantic JSON without `null` padding (imports nothing that a workflow sandbox refuses)."""

from __future__ import annotations

from typing import Any

import temporalio.api.common.v1
from pydantic import BaseModel
from pydantic_core import SchemaSerializer
from pydantic_core.core_schema import any_schema
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)


def none_defaults(value: Any) -> Any:
    """pydantic's `exclude` tree for every model field that is None and whose default is None: leaving those
    out reads back the same. A required field (`x: str | None` without default) is kept even when None, and
    so is anything inside plain dicts and lists that is not a model."""
    if isinstance(value, BaseModel):
        out: dict[str, Any] = {}
        for name, field in type(value).model_fields.items():
            v = getattr(value, name, None)
            if v is None:
                if not field.is_required() and field.default is None and field.default_factory is None:
                    out[name] = True
            elif (sub := none_defaults(v)) is not None:
                out[name] = sub
        return out or None
    if isinstance(value, list | tuple):
        items = {i: sub for i, item in enumerate(value) if (sub := none_defaults(item)) is not None}
        return items or None
    if isinstance(value, dict):
        entries = {k: sub for k, item in value.items() if (sub := none_defaults(item)) is not None}
        return entries or None
    return None


class CompactJSONPayloadConverter(PydanticJSONPlainPayloadConverter):
    """pydantic JSON that leaves out model fields that are None by default and None now.

    Inputs and results read in the Web UI show what was given, not a dozen `null`s, and decode to the same
    models (`none_defaults` keeps a required field even when it is None). Works on any model, whatever its
    base class, so no model has to opt in.
    """

    _serializer = SchemaSerializer(any_schema())

    def to_payload(self, value: Any) -> temporalio.api.common.v1.Payload | None:
        return temporalio.api.common.v1.Payload(metadata={"encoding": self.encoding.encode()},
                                                data=self._serializer.to_json(value, exclude=none_defaults(value)))


class CompactPayloadConverter(CompositePayloadConverter):
    """The SDK's default converters with JSON replaced by `CompactJSONPayloadConverter`."""

    def __init__(self) -> None:
        json_converter = CompactJSONPayloadConverter()
        super().__init__(*(json_converter if isinstance(c, JSONPlainPayloadConverter) else c
                           for c in DefaultPayloadConverter.default_encoding_payload_converters))


compact_data_converter = DataConverter(payload_converter_class=CompactPayloadConverter)
