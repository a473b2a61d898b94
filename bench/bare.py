"""The baseline of bench/per_event.py: a bare workflow running one activity that makes the same httpx POST."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    import httpx
    from pydantic import BaseModel


class BarePost(BaseModel):
    url: str
    token: str
    to: str
    text: str


class BareActivities:
    """One shared client, as the project's runtime has (connection reuse is not what is compared)."""

    def __init__(self) -> None:
        self.http = httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=200))

    @activity.defn(name="bare_post")
    async def post(self, inp: BarePost) -> str:
        r = await self.http.post(inp.url, headers={"Authorization": f"Bearer {inp.token}"},
                                 json={"messaging_product": "whatsapp", "to": inp.to.lstrip("+"), "type": "text",
                                       "text": {"body": inp.text}})
        r.raise_for_status()
        return str(r.json()["messages"][0]["id"])


@workflow.defn(name="BareSend")
class BareSend:
    @workflow.run
    async def run(self, inp: BarePost) -> str:
        return await workflow.execute_activity_method(BareActivities.post, inp,
                                                      start_to_close_timeout=timedelta(seconds=30))
