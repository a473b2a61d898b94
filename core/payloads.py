"""Workflow payloads as pydantic JSON without `null` padding (imports nothing that a workflow sandbox refuses)."""

from __future__ import annotations

from typing import Any

import temporalio.api.common.v1
from pydantic_core import SchemaSerializer
from pydantic_core.core_schema import any_schema
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)


class CompactJSONPayloadConverter(PydanticJSONPlainPayloadConverter):
    """pydantic JSON that leaves out model fields whose value is None.

    Inputs and results read in the Web UI show what was given, not a dozen `null`s. Decoding restores every
    omitted field to its default: our models use None as "not given" (a field whose default is something
    else never holds None), and values inside plain dicts (error details, settings) are kept as they are.
    """

    _serializer = SchemaSerializer(any_schema())

    def to_payload(self, value: Any) -> temporalio.api.common.v1.Payload | None:
        return temporalio.api.common.v1.Payload(metadata={"encoding": self.encoding.encode()},
                                                data=self._serializer.to_json(value, exclude_none=True))


class CompactPayloadConverter(CompositePayloadConverter):
    """The SDK's default converters with JSON replaced by `CompactJSONPayloadConverter`."""

    def __init__(self) -> None:
        json_converter = CompactJSONPayloadConverter()
        super().__init__(*(json_converter if isinstance(c, JSONPlainPayloadConverter) else c
                           for c in DefaultPayloadConverter.default_encoding_payload_converters))


compact_data_converter = DataConverter(payload_converter_class=CompactPayloadConverter)
