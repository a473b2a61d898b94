"""Pure units: message bodies per type, Meta's documented limits (named field and limit), OpenSyte's
WhatsAppAction mapping with variables, and the template checks (status, count, kind, named)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from activities.whatsapp import templates
from activities.whatsapp.messages import build_payload
from activities.whatsapp.models import (
    Contact,
    CurrencyValue,
    DateTimeValue,
    Interactive,
    InteractiveHeader,
    ListRow,
    ListSection,
    Location,
    Media,
    OutboundMessage,
    Reaction,
    ReplyButton,
    SendWhatsAppMessageInput,
    Template,
    TemplateButtonParams,
    TemplateParam,
)
from activities.whatsapp.opensyte import normalize
from core.errors import ConfigurationError, PermanentError


def refused(msg: OutboundMessage) -> str:
    with pytest.raises(PermanentError) as exc:
        build_payload(msg)
    return exc.value.message


def test_text_with_preview_and_reply_context() -> None:
    body = build_payload(OutboundMessage(type="text", text="see https://x.example", preview_url=True,
                                         reply_to_message_id="wamid.A"))
    assert body == {"type": "text", "text": {"body": "see https://x.example", "preview_url": True},
                    "context": {"message_id": "wamid.A"}}
    assert refused(OutboundMessage(type="text", text="x" * 4097)) == \
        "message.text: at most 4096 characters allowed (got 4097)"
    assert refused(OutboundMessage(type="text")) == "message.text: is required"


@pytest.mark.parametrize("kind", ["image", "video", "audio", "document", "sticker"])
def test_media_by_link_or_id(kind: str) -> None:
    by_link = build_payload(OutboundMessage(type=kind, media=Media(link="https://cdn.example/f")))
    assert by_link == {"type": kind, kind: {"link": "https://cdn.example/f"}}
    by_id = build_payload(OutboundMessage(type=kind, media=Media(id="1003383421387256")))
    assert by_id[kind] == {"id": "1003383421387256"}
    assert "exactly one of `id`" in refused(OutboundMessage(type=kind, media=Media(id="1", link="https://a.b/c")))
    assert "exactly one of `id`" in refused(OutboundMessage(type=kind, media=Media()))
    assert "http(s) URL" in refused(OutboundMessage(type=kind, media=Media(link="ftp://a.b/c")))


def test_media_caption_and_filename_rules() -> None:
    doc = build_payload(OutboundMessage(type="document", media=Media(id="9", caption="Invoice", filename="inv.pdf")))
    assert doc["document"] == {"id": "9", "caption": "Invoice", "filename": "inv.pdf"}
    assert refused(OutboundMessage(type="image", media=Media(id="9", caption="c" * 1025))) == \
        "message.media.caption: at most 1024 characters allowed (got 1025)"
    assert "take no caption" in refused(OutboundMessage(type="audio", media=Media(id="9", caption="x")))
    assert "take no caption" in refused(OutboundMessage(type="sticker", media=Media(id="9", caption="x")))
    assert "only documents take a filename" in refused(
        OutboundMessage(type="image", media=Media(id="9", filename="a.png")))


def test_location_contacts_reaction() -> None:
    loc = build_payload(OutboundMessage(type="location", location=Location(latitude=52.52, longitude=13.4,
                                                                           name="HQ", address="Berlin")))
    assert loc["location"] == {"latitude": 52.52, "longitude": 13.4, "name": "HQ", "address": "Berlin"}
    assert "between -90 and 90" in refused(OutboundMessage(type="location",
                                                           location=Location(latitude=91, longitude=0)))
    card = Contact(name={"formatted_name": "Ada Lovelace", "first_name": "Ada"},
                   phones=[{"phone": "+16505551234", "type": "WORK"}])
    assert build_payload(OutboundMessage(type="contacts", contacts=[card]))["contacts"][0]["name"]["formatted_name"] \
        == "Ada Lovelace"
    assert refused(OutboundMessage(type="contacts", contacts=[card] * 6)) == \
        "message.contacts: 1-5 contacts allowed (got 6)"
    assert "formatted_name" in refused(OutboundMessage(type="contacts", contacts=[Contact(name={"first_name": "A"})]))
    react = build_payload(OutboundMessage(type="reaction", reaction=Reaction(message_id="wamid.X", emoji="😀")))
    assert react["reaction"] == {"message_id": "wamid.X", "emoji": "😀"}
    assert build_payload(OutboundMessage(type="reaction", reaction=Reaction(message_id="wamid.X", emoji="")))
    assert "single emoji" in refused(OutboundMessage(type="reaction",
                                                     reaction=Reaction(message_id="wamid.X", emoji="hi")))


def buttons(n: int, title: str = "Yes") -> Interactive:
    return Interactive(type="button", body="Confirm?", buttons=[ReplyButton(id=f"b{i}", title=f"{title}{i}")
                                                                for i in range(n)])


def test_reply_button_limits() -> None:
    body = build_payload(OutboundMessage(type="interactive", interactive=buttons(3)))
    assert body["interactive"]["action"]["buttons"][2] == {"type": "reply", "reply": {"id": "b2", "title": "Yes2"}}
    assert refused(OutboundMessage(type="interactive", interactive=buttons(4))) == \
        "message.interactive.buttons: 1-3 reply buttons allowed (got 4)"
    assert refused(OutboundMessage(type="interactive", interactive=buttons(0))) == \
        "message.interactive.buttons: 1-3 reply buttons allowed (got 0)"
    assert refused(OutboundMessage(type="interactive", interactive=buttons(1, "x" * 20))) == \
        "message.interactive.buttons[0].title: at most 20 characters allowed (got 21)"
    it = buttons(2)
    it.buttons[1].id = "b0"
    assert "must be unique" in refused(OutboundMessage(type="interactive", interactive=it))
    it = buttons(1)
    it.header = InteractiveHeader(type="text", text="h" * 61)
    assert refused(OutboundMessage(type="interactive", interactive=it)) == \
        "message.interactive.header.text: at most 60 characters allowed (got 61)"
    it = buttons(1)
    it.footer = "f" * 61
    assert "footer: at most 60" in refused(OutboundMessage(type="interactive", interactive=it))
    it = buttons(1)
    it.body = "b" * 1025
    assert "body: at most 1024" in refused(OutboundMessage(type="interactive", interactive=it))
    it = buttons(1)
    it.header = InteractiveHeader(type="image", media=Media(link="https://cdn.example/p.png"))
    assert build_payload(OutboundMessage(type="interactive", interactive=it))["interactive"]["header"] == \
        {"type": "image", "image": {"link": "https://cdn.example/p.png"}}


def a_list(sections: int, rows: int, **row: str) -> Interactive:
    return Interactive(type="list", body="Pick", button="Options", sections=[
        ListSection(title=f"S{s}", rows=[ListRow(id=f"r{s}-{r}", title=row.get("title", f"Row {r}"),
                                                 description=row.get("description"))
                                         for r in range(rows)]) for s in range(sections)])


def test_list_limits() -> None:
    body = build_payload(OutboundMessage(type="interactive", interactive=a_list(2, 2)))
    assert body["interactive"]["action"]["button"] == "Options"
    assert [len(s["rows"]) for s in body["interactive"]["action"]["sections"]] == [2, 2]
    assert refused(OutboundMessage(type="interactive", interactive=a_list(11, 0))) == \
        "message.interactive.sections: 1-10 sections allowed (got 11)"
    assert refused(OutboundMessage(type="interactive", interactive=a_list(2, 6))) == \
        "message.interactive.sections: at most 10 rows in total across sections (got 12)"
    assert "rows[0].title: at most 24" in refused(OutboundMessage(type="interactive",
                                                                  interactive=a_list(1, 1, title="t" * 25)))
    assert "rows[0].description: at most 72" in refused(
        OutboundMessage(type="interactive", interactive=a_list(1, 1, description="d" * 73)))
    two = a_list(2, 1)
    two.sections[1].title = None
    assert refused(OutboundMessage(type="interactive", interactive=two)) == \
        "message.interactive.sections[1].title: is required"
    label = a_list(1, 1)
    label.button = "b" * 21
    assert refused(OutboundMessage(type="interactive", interactive=label)) == \
        "message.interactive.button: at most 20 characters allowed (got 21)"
    long_title = a_list(1, 1)
    long_title.sections[0].title = "s" * 25
    assert "sections[0].title: at most 24" in refused(OutboundMessage(type="interactive", interactive=long_title))


def test_template_components_positional_named_currency_datetime_buttons() -> None:
    t = Template(name="order_update", language="en_US", header=["A-17"],
                 body=["Ada", TemplateParam(type="currency", currency=CurrencyValue(
                     amount_1000=100990, code="USD", fallback_value="$100.99")),
                       TemplateParam(type="date_time", date_time=DateTimeValue(fallback_value="February 25, 1977"))],
                 buttons=[TemplateButtonParams(index=0, sub_type="URL", parameters=["track-17"]),
                          TemplateButtonParams(index=1, sub_type="quick_reply", parameters=["STOP_PROMO"])])
    body = build_payload(OutboundMessage(type="template", template=t))["template"]
    assert body["name"] == "order_update" and body["language"] == {"code": "en_US"}
    header, main, url, quick = body["components"]
    assert header == {"type": "header", "parameters": [{"type": "text", "text": "A-17"}]}
    assert main["parameters"][1] == {"type": "currency", "currency": {"amount_1000": 100990, "code": "USD",
                                                                     "fallback_value": "$100.99"}}
    assert main["parameters"][2] == {"type": "date_time", "date_time": {"fallback_value": "February 25, 1977"}}
    assert url == {"type": "button", "sub_type": "url", "index": "0",
                   "parameters": [{"type": "text", "text": "track-17"}]}
    assert quick["parameters"] == [{"type": "payload", "payload": "STOP_PROMO"}]
    named = build_payload(OutboundMessage(type="template", template=Template(
        name="welcome_named", body={"first_name": "Ada", "code": "X1"})))["template"]["components"][0]
    assert named["parameters"] == [{"type": "text", "text": "Ada", "parameter_name": "first_name"},
                                   {"type": "text", "text": "X1", "parameter_name": "code"}]
    bad_currency = Template(name="t", body=[TemplateParam(type="currency", currency=CurrencyValue(
        amount_1000=1, code="usd", fallback_value="1"))])
    assert "ISO 4217" in refused(OutboundMessage(type="template", template=bad_currency))
    assert "language code" in refused(OutboundMessage(type="template", template=Template(name="t", language="english")))
    assert "lowercase letters" in refused(OutboundMessage(type="template", template=Template(
        name="t", body={"First Name": "x"})))


ORDER = {"name": "order_update", "language": "en_US", "status": "APPROVED", "category": "UTILITY",
         "components": [{"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
                        {"type": "BODY", "text": "Hi {{1}}, order {{2}} ships {{3}}."},
                        {"type": "BUTTONS", "buttons": [{"type": "URL", "url": "https://s.example/{{1}}"},
                                                        {"type": "QUICK_REPLY", "text": "Stop"}]}]}


def order(**kw: object) -> Template:
    base: dict[str, object] = {"name": "order_update", "header": ["A-1"], "body": ["Ada", "A-1", "Monday"],
                               "buttons": [{"index": 0, "sub_type": "url", "parameters": ["a1"]}]}
    return Template.model_validate(base | kw)


def test_template_check_statuses() -> None:
    assert templates.check(ORDER, order()) == "utility"
    for status in ("PAUSED", "DISABLED", "REJECTED", "PENDING"):
        with pytest.raises(ConfigurationError) as exc:
            templates.check({**ORDER, "status": status}, order())
        assert status in exc.value.message and exc.value.code == f"template_{status.lower()}"


def test_template_check_counts_and_kinds() -> None:
    with pytest.raises(PermanentError) as exc:
        templates.check(ORDER, order(body=["Ada"]))
    assert exc.value.message == "template 'order_update' body: expected 3 parameters, got 1"
    with pytest.raises(PermanentError) as exc:
        templates.check(ORDER, order(header=[]))
    assert "header: expected 1 parameter, got 0" in exc.value.message
    with pytest.raises(PermanentError) as exc:
        templates.check(ORDER, order(buttons=[]))
    assert "button 0 (url): expected 1 parameter, got 0" in exc.value.message
    with pytest.raises(PermanentError) as exc:
        templates.check(ORDER, order(body=["Ada", "A-1", {"type": "image", "image": {"link": "https://a.b/c"}}]))
    assert exc.value.code == "template_param_format"
    promo = {"name": "p", "language": "en_US", "status": "APPROVED", "category": "MARKETING",
             "components": [{"type": "HEADER", "format": "IMAGE"}, {"type": "BODY", "text": "Hi"}]}
    ok = Template(name="p", header=[{"type": "image", "image": {"link": "https://a.b/c.png"}}])
    assert templates.check(promo, ok) == "marketing"
    with pytest.raises(PermanentError) as exc:
        templates.check(promo, Template(name="p", header=["text instead"]))
    assert exc.value.code == "template_param_format"


def test_template_check_named() -> None:
    named = {"name": "w", "language": "en_US", "status": "APPROVED", "category": "MARKETING",
             "parameter_format": "NAMED", "components": [{"type": "BODY", "text": "Hi {{first_name}}, {{code}}"}]}
    assert templates.check(named, Template(name="w", body={"first_name": "A", "code": "1"})) == "marketing"
    with pytest.raises(PermanentError) as exc:
        templates.check(named, Template(name="w", body={"first_name": "A", "coupon": "1"}))
    assert "missing code" in exc.value.message and "unexpected coupon" in exc.value.message
    with pytest.raises(PermanentError, match="pass body as an object"):
        templates.check(named, Template(name="w", body=["A", "1"]))


def test_opensyte_text_with_both_variable_syntaxes() -> None:
    inp = SendWhatsAppMessageInput(organization_id="o", toNumbers=["{customer.phone}", "+16505550002"],
                                   messageType="TEXT", textMessage="Hi {{ customer.name }}, invoice {INVOICE_NUMBER}",
                                   variables={"customer": {"name": "Ada", "phone": "+16505550001"},
                                              "INVOICE_NUMBER": "INV-7"})
    to, msg = normalize(inp)
    assert to == ["+16505550001", "+16505550002"]
    assert msg.type == "text" and msg.text == "Hi Ada, invoice INV-7"


def test_opensyte_template_params_forms() -> None:
    positional = normalize(SendWhatsAppMessageInput(
        organization_id="o", to="+16505550001", messageType="TEMPLATE", templateName="order_update",
        templateLanguage="en_GB", templateParams=["{name}", "A-1"], variables={"name": "Ada"}))[1]
    assert positional.template == Template(name="order_update", language="en_GB", body=["Ada", "A-1"])
    named = normalize(SendWhatsAppMessageInput(
        organization_id="o", to="+16505550001", messageType="TEMPLATE", templateName="w",
        templateParams={"first_name": "{{first}}"}, variables={"first": "Ada"}))[1]
    assert named.template is not None and named.template.body == {"first_name": "Ada"}
    assert named.template.language == "en_US"
    full = normalize(SendWhatsAppMessageInput(
        organization_id="o", to="+16505550001", messageType="TEMPLATE", templateName="order_update",
        templateParams={"header": ["A-1"], "body": ["Ada"], "buttons": [{"index": 0, "sub_type": "URL",
                                                                          "parameters": ["a1"]}]}))[1]
    assert full.template is not None and full.template.buttons[0].sub_type == "url"


@pytest.mark.parametrize("kind", ["IMAGE", "VIDEO", "AUDIO", "DOCUMENT"])
def test_opensyte_media(kind: str) -> None:
    _to, msg = normalize(SendWhatsAppMessageInput(
        organization_id="o", to="+16505550001", messageType=kind, mediaUrl="https://cdn.example/{file}",
        mediaType=kind.lower(), caption=None if kind == "AUDIO" else "For {who}",
        variables={"file": "q3%20report.pdf", "who": "Ada"}))
    assert msg.type == kind.lower() and msg.media is not None
    assert msg.media.link == "https://cdn.example/q3%20report.pdf"
    if kind != "AUDIO":
        assert msg.media.caption == "For Ada"
    assert msg.media.filename == ("q3 report.pdf" if kind == "DOCUMENT" else None)
    build_payload(msg)


def test_opensyte_location_and_contact_from_template_params() -> None:
    loc = normalize(SendWhatsAppMessageInput(organization_id="o", to="+16505550001", messageType="LOCATION",
                                             templateParams={"latitude": 1.5, "longitude": 2.5, "name": "{n}"},
                                             variables={"n": "Depot"}))[1]
    assert loc.location == Location(latitude=1.5, longitude=2.5, name="Depot")
    card = normalize(SendWhatsAppMessageInput(organization_id="o", to="+16505550001", messageType="CONTACT",
                                              templateParams={"name": {"formatted_name": "Ada"}}))[1]
    assert card.type == "contacts" and card.contacts[0].name == {"formatted_name": "Ada"}


def test_opensyte_refusals_name_the_field() -> None:
    def why(**kw: object) -> str:
        with pytest.raises(PermanentError) as exc:
            normalize(SendWhatsAppMessageInput.model_validate({"organization_id": "o", **kw}))
        return exc.value.message

    assert why(to="+1650", textMessage="Hi {missing}") == "text: no value for variable {missing} in `variables`"
    assert why(textMessage="hi") == "to: at least 1 recipient is required (to / toNumbers)"
    assert why(to="+1", messageType="TEMPLATE") == "templateName: is required for messageType TEMPLATE"
    assert why(to="+1", messageType="IMAGE", mediaType="video", mediaUrl="https://a.b/c") == \
        "mediaType: 'video' contradicts messageType IMAGE"
    assert why(to="+1", text="a", textMessage="b") == "text: conflicts with textMessage; give one of them"
    # 1000 in each list is a model constraint (in the schema); the union of to and toNumbers is checked here.
    with pytest.raises(ValidationError, match="at most 1000 items"):
        SendWhatsAppMessageInput.model_validate({"organization_id": "o", "to": ["+1"] * 1001, "text": "x"})
    many = [f"+1650555{i:04d}" for i in range(1001)]
    assert why(to=many[:600], toNumbers=many[600:], text="x").startswith("to: at most 1000 recipients")
    assert why(to="+1", messageType="LOCATION", templateParams={"lat": 1}).startswith("templateParams: for LOCATION")
