"""Activities against the sandbox: every message type, refusals before any call, every template failure
(ours and Meta's codes), the template cache, mark-as-read, and phone number registration/verification."""

from __future__ import annotations

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.whatsapp import errors
from activities.whatsapp.activities import WhatsAppActivities, store_pin
from activities.whatsapp.models import (
    Contact,
    Interactive,
    ListRow,
    ListSection,
    Location,
    MarkReadInput,
    OutboundMessage,
    PhoneNumberInput,
    ReplyButton,
    RequestCodeInput,
    SendContactsInput,
    SendInteractiveInput,
    SendLocationInput,
    SendMediaInput,
    SendMessageInput,
    SendReactionInput,
    SendTemplateInput,
    SendTextInput,
    Template,
    TemplatesInput,
    VerifyCodeInput,
)
from activities.whatsapp.store import WhatsAppStore
from core.connections import test_connection as connection_test
from tests.test_whatsapp_support import (
    NAMED_TEMPLATE,
    ORDER_TEMPLATE,
    PROMO_TEMPLATE,
    customer_writes,
    env,
    sent_bodies,
    wa_conn,
)

CUSTOMER = "+16505551234"


def order_template(**kw: object) -> Template:
    return Template.model_validate({
        "name": "order_update", "header": ["A-17"], "body": ["Ada", "A-17", "Monday", "$10"],
        "buttons": [{"index": 0, "sub_type": "url", "parameters": ["a17"]}]} | kw)


async def test_every_message_type_is_accepted(runtime, sandbox) -> None:
    wa = await wa_conn(runtime, sandbox.url, templates=[ORDER_TEMPLATE, NAMED_TEMPLATE, PROMO_TEMPLATE])
    inbound = await customer_writes(sandbox.url, wa, CUSTOMER, "hi there")
    WhatsAppStore(runtime.store).opt_in(wa.organization_id, wa.phone_number_id, ["16505551234"], "test")
    acts, org = WhatsAppActivities(runtime), wa.organization_id
    base = {"organization_id": org, "to": CUSTOMER}
    results = [
        await env().run(acts.send_text, SendTextInput(**base, text="hello", preview_url=True,
                                                      reply_to_message_id=inbound["message_id"])),
        *[await env().run(acts.send_media, SendMediaInput(**base, media_type=kind, link=f"https://cdn.example/{kind}",
                                                          caption="c" if kind in ("image", "video") else None))
          for kind in ("image", "video", "audio", "sticker")],
        await env().run(acts.send_media, SendMediaInput(**base, media_type="document", id="1003383421387256",
                                                        caption="Q3", filename="q3.pdf")),
        await env().run(acts.send_location, SendLocationInput(**base, location=Location(latitude=1, longitude=2))),
        await env().run(acts.send_contacts, SendContactsInput(**base, contacts=[Contact(
            name={"formatted_name": "Ada"}, phones=[{"phone": "+16505550000"}])])),
        await env().run(acts.send_reaction, SendReactionInput(**base, message_id=inbound["message_id"], emoji="👍")),
        await env().run(acts.send_interactive, SendInteractiveInput(**base, interactive=Interactive(
            type="button", body="Confirm?", buttons=[ReplyButton(id="yes", title="Yes"),
                                                     ReplyButton(id="no", title="No")]))),
        await env().run(acts.send_interactive, SendInteractiveInput(**base, interactive=Interactive(
            type="list", body="Pick", button="Shipping", sections=[ListSection(title="Fast", rows=[
                ListRow(id="row-express", title="Express", description="Next day")])]))),
        await env().run(acts.send_template, SendTemplateInput(**base, template=order_template())),
        await env().run(acts.send_template, SendTemplateInput(**base, template=Template(
            name="welcome_named", body={"first_name": "Ada", "code": "X1"}))),
        await env().run(acts.send_template, SendTemplateInput(**base, template=Template(
            name="spring_promo", header=[{"type": "image", "image": {"link": "https://cdn.example/p.png"}}],
            body=["Ada"]))),
        await env().run(acts.send_message, SendMessageInput(**base, message=OutboundMessage(
            type="template", template=Template(name="hello_world")))),
    ]
    assert all(r.status == "accepted" and r.message_id for r in results), results
    assert [r.category for r in results[-4:]] == ["utility", "marketing", "marketing", "utility"]
    assert {r.category for r in results[:-4]} == {"service"}
    types = [b["type"] for b in sent_bodies(sandbox, wa.phone_number_id)]
    assert types == ["text", "image", "video", "audio", "sticker", "document", "location", "contacts", "reaction",
                     "interactive", "interactive", "template", "template", "template", "template"]
    records = WhatsAppStore(runtime.store).messages(wa.organization_id, "16505551234")
    assert sorted(r.category or "" for r in records if r.direction == "out") == sorted(r.category for r in results)
    usage = runtime.store.usage(connection_id=wa.connection_id)
    assert {u.action for u in usage} >= {"whatsapp.send_text", "whatsapp.send_media", "whatsapp.send_template",
                                         "whatsapp.send_interactive", "whatsapp.send_reaction"}
    sends = [u for u in usage if u.reference]  # one row per message; template lookups have none
    assert len(sends) == len(results) and all(u.category for u in sends)
    assert await env().run(acts.mark_read, MarkReadInput(organization_id=org, message_id=inbound["message_id"],
                                                         typing_indicator=True))


@pytest.mark.parametrize(("inp", "message"), [
    (SendInteractiveInput(organization_id="?", to=CUSTOMER, interactive=Interactive(
        type="button", body="b", buttons=[ReplyButton(id=str(i), title="t") for i in range(4)])),
     "message.interactive.buttons: 1-3 reply buttons allowed (got 4)"),
    (SendMediaInput(organization_id="?", to=CUSTOMER, media_type="document", link="https://a.b/c",
                    caption="x" * 1025), "message.media.caption: at most 1024 characters allowed (got 1025)"),
    (SendTextInput.model_construct(organization_id="?", connection="default", to=CUSTOMER, text="x" * 4097,
                                   preview_url=False, reply_to_message_id=None, idempotency_key=None),
     "message.text: at most 4096 characters allowed (got 4097)"),
    (SendContactsInput(organization_id="?", to=CUSTOMER, contacts=[]), "message.contacts: 1-5 contacts allowed"),
])
async def test_bad_input_is_refused_before_any_call(runtime, sandbox, inp, message) -> None:
    wa = await wa_conn(runtime, sandbox.url)
    acts = WhatsAppActivities(runtime)
    fn = {SendInteractiveInput: acts.send_interactive, SendMediaInput: acts.send_media,
          SendTextInput: acts.send_text, SendContactsInput: acts.send_contacts}[type(inp)]
    before = len(sandbox.state.recorder.dump("whatsapp"))
    with pytest.raises(ApplicationError) as exc:
        await env().run(fn, inp.model_copy(update={"organization_id": wa.organization_id}))
    assert exc.value.type == "PermanentError" and exc.value.non_retryable
    assert message in exc.value.message
    assert len(sandbox.state.recorder.dump("whatsapp")) == before


async def send_template(runtime, wa, template: Template) -> ApplicationError:
    with pytest.raises(ApplicationError) as exc:
        await env().run(WhatsAppActivities(runtime).send_template, SendTemplateInput(
            organization_id=wa.organization_id, to=CUSTOMER, template=template))
    return exc.value


@pytest.mark.parametrize("status", ["PAUSED", "DISABLED", "REJECTED", "PENDING"])
async def test_unapproved_template_is_a_configuration_error_naming_the_status(runtime, sandbox, status) -> None:
    wa = await wa_conn(runtime, sandbox.url, templates=[{**ORDER_TEMPLATE, "status": status}])
    WhatsAppStore(runtime.store).opt_in(wa.organization_id, wa.phone_number_id, ["16505551234"], "test")
    err = await send_template(runtime, wa, order_template())
    assert err.type == "ConfigurationError" and status in err.message
    assert not sent_bodies(sandbox, wa.phone_number_id)
    assert runtime.store.notifications(connection_id=wa.connection_id)[-1].kind == "configuration_error"


async def test_template_missing_or_mismatched_is_refused_before_any_send(runtime, sandbox) -> None:
    wa = await wa_conn(runtime, sandbox.url, templates=[ORDER_TEMPLATE, NAMED_TEMPLATE])
    WhatsAppStore(runtime.store).opt_in(wa.organization_id, wa.phone_number_id, ["16505551234"], "test")
    missing = await send_template(runtime, wa, order_template(language="de_DE"))
    assert missing.type == "ConfigurationError" and "does not exist in language de_DE; it exists in en_US" in \
        missing.message
    count = await send_template(runtime, wa, order_template(body=["Ada"]))
    assert count.type == "PermanentError" and "body: expected 4 parameters, got 1" in count.message
    kind = await send_template(runtime, wa, order_template(header=[{"type": "image", "image": {"id": "1"}}]))
    assert kind.type == "PermanentError" and kind.details[0]["code"] == "template_param_format"
    named = await send_template(runtime, wa, Template(name="welcome_named", body={"first_name": "Ada"}))
    assert "missing code" in named.message
    assert not sent_bodies(sandbox, wa.phone_number_id)


async def test_provider_template_codes_are_classified_the_same_way(runtime, sandbox) -> None:
    """Meta's own 132000/132001/132012/132015/132016 (our cache can be stale) map onto the same classes."""
    wa = await wa_conn(runtime, sandbox.url, templates=[ORDER_TEMPLATE, PROMO_TEMPLATE])
    url = f"{sandbox.url}/whatsapp/v23.0/{wa.phone_number_id}/messages"
    auth = {"Authorization": f"Bearer {wa.token}"}

    def tpl(name: str, components: list, lang: str = "en_US") -> dict:
        return {"messaging_product": "whatsapp", "to": "16505551234", "type": "template",
                "template": {"name": name, "language": {"code": lang}, "components": components}}

    async with httpx.AsyncClient() as http:
        cases = {
            132001: tpl("nope", []),
            132000: tpl("order_update", [{"type": "header", "parameters": [{"type": "text", "text": "A-1"}]},
                                         {"type": "body", "parameters": [{"type": "text", "text": "Ada"}]}]),
            132012: tpl("spring_promo", [{"type": "header", "parameters": [{"type": "text", "text": "x"}]},
                                         {"type": "body", "parameters": [{"type": "text", "text": "Ada"}]}]),
        }
        seen = {}
        for code, body in cases.items():
            r = await http.post(url, json=body, headers=auth)
            seen[code] = (r.status_code, r.json())
        for status, code in (("PAUSED", 132015), ("DISABLED", 132016)):
            await http.patch(f"{sandbox.url}/_sandbox/whatsapp/templates/{wa.waba_id}/spring_promo/en_US",
                             json={"status": status})
            r = await http.post(url, json=tpl("spring_promo", []), headers=auth)
            seen[code] = (r.status_code, r.json())
    assert seen[132001][0] == 404
    assert "number of localizable_params (1) does not match the expected number of params (4)" in \
        seen[132000][1]["error"]["error_data"]["details"]
    classes = {code: errors.classify(status, {}, body).error_class.value for code, (status, body) in seen.items()}
    assert classes == {132001: "ConfigurationError", 132000: "PermanentError", 132012: "PermanentError",
                       132015: "ConfigurationError", 132016: "ConfigurationError"}
    # Our cache still says APPROVED: Meta's 132016 comes back through the pipeline as a configuration error.
    WhatsAppStore(runtime.store).opt_in(wa.organization_id, wa.phone_number_id, ["16505551234"], "test")
    await env().run(WhatsAppActivities(runtime).list_templates, TemplatesInput(organization_id=wa.organization_id))
    await sandbox_patch(sandbox.url, wa, "order_update", {"status": "DISABLED"})
    err = await send_template(runtime, wa, order_template())
    assert err.type == "ConfigurationError" and err.details[0]["code"] == 132016


async def sandbox_patch(url: str, wa, name: str, patch: dict) -> None:
    async with httpx.AsyncClient() as http:
        await http.patch(f"{url}/_sandbox/whatsapp/templates/{wa.waba_id}/{name}/en_US", json=patch)


async def test_templates_are_paged_and_cached_with_a_ttl(runtime, sandbox) -> None:
    many = [{"name": f"bulk_{i:03d}", "language": "en_US", "components": [{"type": "BODY", "text": "x"}]}
            for i in range(150)]
    wa = await wa_conn(runtime, sandbox.url, templates=many, settings={"template_cache_seconds": 0.3})
    acts = WhatsAppActivities(runtime)

    def template_gets() -> int:
        return sum(1 for r in sandbox.state.recorder.dump("whatsapp") if r["path"].endswith(
            f"{wa.waba_id}/message_templates"))

    listed = await env().run(acts.list_templates, TemplatesInput(organization_id=wa.organization_id))
    assert len(listed.templates) == 151 and template_gets() == 2  # 100 + 51 over two pages
    await env().run(acts.list_templates, TemplatesInput(organization_id=wa.organization_id))
    assert template_gets() == 2  # served from the cache
    await env().run(acts.list_templates, TemplatesInput(organization_id=wa.organization_id, refresh=True))
    assert template_gets() == 4


async def test_registration_and_verification(runtime, sandbox) -> None:
    wa = await wa_conn(runtime, sandbox.url, sandbox={"code_verification_status": "UNVERIFIED"})
    acts = WhatsAppActivities(runtime)
    ref = {"organization_id": wa.organization_id}
    status = await env().run(acts.get_phone_number, PhoneNumberInput(**ref))
    assert status.code_verification_status == "UNVERIFIED" and status.quality_rating == "GREEN"
    report = await connection_test(runtime, wa.organization_id, "WHATSAPP_BUSINESS", "default")
    assert not report["ok"] and "not verified" in report["problems"][0]
    assert (await env().run(acts.request_code, RequestCodeInput(**ref, code_method="VOICE"))).success
    async with httpx.AsyncClient() as http:
        code = (await http.get(f"{sandbox.url}/_sandbox/whatsapp/codes/{wa.phone_number_id}")).json()["code"]
    wrong = "000000" if code != "000000" else "111111"
    with pytest.raises(ApplicationError) as exc:
        await env().run(acts.verify_code, VerifyCodeInput(**ref, code=wrong))
    assert exc.value.details[0]["code"] == 136025
    assert (await env().run(acts.verify_code, VerifyCodeInput(**ref, code=code))).success
    assert (await env().run(acts.get_phone_number, PhoneNumberInput(**ref))).code_verification_status == "VERIFIED"
    # Deregistered: sends fail with 133010 and the connection test says what to do.
    assert (await env().run(acts.deregister, PhoneNumberInput(**ref))).success
    await customer_writes(sandbox.url, wa, CUSTOMER)
    with pytest.raises(ApplicationError) as exc:
        await env().run(acts.send_text, SendTextInput(**ref, to=CUSTOMER, text="hi"))
    assert exc.value.type == "ConfigurationError" and exc.value.details[0]["code"] == 133010
    report = await connection_test(runtime, wa.organization_id, "WHATSAPP_BUSINESS", "default")
    assert any("133010" in p for p in report["problems"]), report
    with pytest.raises(ApplicationError) as exc:
        await env().run(acts.register, PhoneNumberInput(**ref))
    assert exc.value.details[0]["code"] == "pin_missing"
    await store_pin(runtime, wa.organization_id, "default", "246810")
    assert (await env().run(acts.register, PhoneNumberInput(**ref))).success
    assert (await env().run(acts.send_text, SendTextInput(**ref, to=CUSTOMER, text="hi"))).status == "accepted"
    # The number now has a two-step PIN: a different one is refused by Meta (133005).
    await store_pin(runtime, wa.organization_id, "default", "135790")
    with pytest.raises(ApplicationError) as exc:
        await env().run(acts.register, PhoneNumberInput(**ref))
    assert exc.value.details[0]["code"] == 133005
    recorded = [r for r in sandbox.state.recorder.dump("whatsapp")
                if r["path"].endswith(f"/{wa.phone_number_id}/register")]
    assert len(recorded) == 2
    assert all(r["body"]["pin"] in ("246810", "135790") for r in recorded)
    audit = " ".join(repr(e.detail) for e in runtime.store.audit_log(wa.organization_id))
    assert "246810" not in audit and "135790" not in audit
