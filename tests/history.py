"""Helpers to read workflow histories raw and decoded (through the payload codec)."""

from __future__ import annotations

import base64
import json
from typing import Any

from google.protobuf import json_format
from temporalio.api.common.v1 import Payload
from temporalio.client import Client


def _payload_dicts(node: Any, out: list[dict[str, Any]]) -> None:
    if isinstance(node, dict):
        if "data" in node and "metadata" in node and isinstance(node["metadata"], dict):
            out.append(node)
        for v in node.values():
            _payload_dicts(v, out)
    elif isinstance(node, list):
        for v in node:
            _payload_dicts(v, out)


async def history_texts(client: Client, workflow_id: str) -> tuple[str, str]:
    """(raw history JSON as stored by Temporal, every payload decoded to text)."""
    hist = await client.get_workflow_handle(workflow_id).fetch_history()
    raw = hist.to_json()
    payloads: list[dict[str, Any]] = []
    for ev in hist.events:
        _payload_dicts(json_format.MessageToDict(ev), payloads)
    codec = client.data_converter.payload_codec
    protos = [json_format.ParseDict(p, Payload()) for p in payloads]
    decoded = await codec.decode(protos) if codec else protos
    texts = []
    for p in decoded:
        texts.append(p.data.decode("utf-8", "replace"))
        texts.extend(base64.b64decode(v).decode("utf-8", "replace") if isinstance(v, str) else str(v)
                     for v in json_format.MessageToDict(p).get("metadata", {}).values())
    return raw, json.dumps(texts)
