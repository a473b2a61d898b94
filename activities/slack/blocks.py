"""Block Kit: validation with slack_sdk's block models and Slack's limits, variables, plain text.

An invalid message is a PermanentError raised before any call, and its message points at the
offending block the way Slack's own `invalid_blocks` answer does (`/blocks/3/text`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.basic_objects import JsonObject
from slack_sdk.models.blocks import Block

from activities.slack.spec import MAX_ATTACHMENTS, MAX_BLOCKS_MESSAGE, MAX_BLOCKS_MODAL, MAX_MODAL_TITLE
from core.errors import PermanentError

# slack_sdk logs (rather than raises) on unknown block types and keys; we report those ourselves.
logging.getLogger("slack_sdk.models").setLevel(logging.ERROR)

# Both placeholder syntaxes OpenSyte uses: `{VAR}` / `{user.name}` and `{{ var }}`.
_DOUBLE = re.compile(r"{{\s*([A-Za-z0-9_.-]+)\s*}}")
_SINGLE = re.compile(r"{([A-Za-z0-9_.]+)}")


class InvalidBlocks(PermanentError):
    """A Block Kit payload Slack would refuse; `details['pointer']` names the offending block."""


def _fail(pointer: str, block: Mapping[str, Any] | None, reason: str, code: str = "invalid_blocks") -> InvalidBlocks:
    where = pointer
    if block is not None:
        kind = block.get("type", "?")
        where += f" ({kind}" + (f", block_id {block['block_id']!r}" if block.get("block_id") else "") + ")"
    return InvalidBlocks(f"{where}: {reason}", code=code, provider="slack", details={"pointer": pointer})


def validate_blocks(blocks: Any, *, field: str = "blocks", modal: bool = False) -> list[dict[str, Any]]:
    """Validate a list of blocks; return them as slack_sdk serialises them (what Slack receives)."""
    if not isinstance(blocks, list):
        raise _fail(f"/{field}", None, "must be an array of blocks", code="invalid_blocks_format")
    limit = MAX_BLOCKS_MODAL if modal else MAX_BLOCKS_MESSAGE
    if len(blocks) > limit:
        raise _fail(f"/{field}", None, f"{len(blocks)} blocks; no more than {limit} items allowed "
                    f"in a {'modal' if modal else 'message'}")
    out: list[dict[str, Any]] = []
    seen_ids: dict[str, int] = {}
    for i, raw in enumerate(blocks):
        pointer = f"/{field}/{i}"
        if not isinstance(raw, Mapping):
            raise _fail(pointer, None, "a block must be an object", code="invalid_blocks_format")
        if "type" not in raw:
            raise _fail(pointer, raw, "missing required property 'type'")
        block = Block.parse(dict(raw))
        if block is None:
            raise _fail(pointer, raw, f"unknown block type {raw.get('type')!r}")
        unknown = sorted(set(raw) - set(block.attributes))
        if unknown:
            raise _fail(pointer, raw, f"invalid additional property: {', '.join(unknown)}")
        try:
            data = block.to_dict()  # runs every slack_sdk validator, nested elements included
        except SlackObjectFormationError as exc:
            raise _fail(pointer + _inner_pointer(block), raw, str(exc)) from None
        except (TypeError, AttributeError, ValueError) as exc:
            raise _fail(pointer, raw, f"malformed block: {exc}") from None
        bid = raw.get("block_id")
        if bid is not None:
            if bid in seen_ids:
                raise _fail(pointer, raw, f"block_id {bid!r} is already used by /{field}/{seen_ids[bid]}")
            seen_ids[bid] = i
        out.append(data)
    return out


def _inner_pointer(block: Block) -> str:
    """The path of the nested element whose validator failed ('' when the block itself is at fault)."""
    for name in sorted(block.attributes):
        value = getattr(block, name, None)
        items = list(enumerate(value)) if isinstance(value, (list, tuple)) else [(None, value)]
        for idx, item in items:
            if not isinstance(item, JsonObject):
                continue
            try:
                item.to_dict()
            except SlackObjectFormationError:
                return f"/{name}" + (f"/{idx}" if idx is not None else "")
    return ""


def validate_attachments(attachments: Any) -> list[dict[str, Any]]:
    if not isinstance(attachments, list):
        raise PermanentError("attachments: must be an array", code="invalid_attachments", provider="slack")
    if len(attachments) > MAX_ATTACHMENTS:
        raise PermanentError(f"attachments: {len(attachments)} given; Slack accepts at most {MAX_ATTACHMENTS}",
                             code="too_many_attachments", provider="slack")
    out: list[dict[str, Any]] = []
    for i, att in enumerate(attachments):
        if not isinstance(att, Mapping):
            raise PermanentError(f"/attachments/{i}: an attachment must be an object",
                                 code="invalid_attachments", provider="slack")
        if "blocks" in att:
            att = {**att, "blocks": validate_blocks(att["blocks"], field=f"attachments/{i}/blocks")}
        out.append(dict(att))
    return out


def validate_view(view: Any) -> dict[str, Any]:
    """A modal for views.open: type, title length, blocks (100 max) and callback id."""
    if not isinstance(view, Mapping) or view.get("type") != "modal":
        raise PermanentError("view: must be an object with type 'modal'", code="invalid_arguments",
                             provider="slack")
    title = (view.get("title") or {}).get("text", "")
    if not title or len(title) > MAX_MODAL_TITLE:
        raise PermanentError(f"view.title: must be 1..{MAX_MODAL_TITLE} characters (got {len(title)})",
                             code="invalid_arguments", provider="slack")
    return {**view, "blocks": validate_blocks(view.get("blocks") or [], field="view/blocks", modal=True)}


# ---- variables ------------------------------------------------------------------------------
def _lookup(variables: Mapping[str, Any], name: str) -> Any:
    if name in variables:
        return variables[name]
    cur: Any = variables
    for part in name.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return None
        cur = cur[part]
    return cur


def render_text(text: str, variables: Mapping[str, Any]) -> str:
    """Fill known placeholders; unknown ones stay as written (text may legitimately hold braces)."""
    if not variables or "{" not in text:
        return text

    def sub(m: re.Match[str]) -> str:
        value = _lookup(variables, m.group(1))
        return m.group(0) if value is None else str(value)

    return _SINGLE.sub(sub, _DOUBLE.sub(sub, text))


def render(value: Any, variables: Mapping[str, Any]) -> Any:
    """Render every string inside blocks/attachments (keys and non-strings untouched)."""
    if not variables:
        return value
    if isinstance(value, str):
        return render_text(value, variables)
    if isinstance(value, list):
        return [render(v, variables) for v in value]
    if isinstance(value, Mapping):
        return {k: render(v, variables) for k, v in value.items()}
    return value


# ---- plain text (for fallbacks that cannot show Block Kit) -----------------------------------
def plain_text(text: str | None, blocks: list[dict[str, Any]] | None) -> str:
    """The message as plain text: `text` if given, else the text found in the blocks."""
    if text:
        return text
    parts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            if node.get("type") in ("plain_text", "mrkdwn") and isinstance(node.get("text"), str):
                parts.append(node["text"])
                return
            for k, v in node.items():
                if k not in ("accessory", "elements") or node.get("type") in ("context", "rich_text"):
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(blocks or [])
    return "\n".join(p for p in parts if p).strip() or json.dumps(blocks)[:4096]
