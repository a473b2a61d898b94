"""Send intents: recorded before a provider call, settled after it, reconciled when an answer was lost."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from store.models import IntentState, SendIntent, utcnow

if TYPE_CHECKING:
    from sqlmodel import Session

    from store.db import Store


@dataclass(frozen=True)
class Claim:
    """What to do with one intent now.

    `send`: make the provider call (`resend` when an earlier attempt's outcome was never learned). Otherwise the
    intent is final (`intent.state` accepted or failed: return its result), or an earlier attempt's answer may
    still arrive: wait `wait_seconds`, then claim again.
    """

    intent: SendIntent
    send: bool
    resend: bool = False
    wait_seconds: float = 0.0

    @property
    def final(self) -> bool:
        return self.intent.state in (IntentState.ACCEPTED.value, IntentState.FAILED.value)


@dataclass(frozen=True)
class Settle:
    """The outcome of one attempt: accepted (with the provider's reference), pending (refused for now) or failed."""

    key: str
    state: IntentState
    provider_ref: str | None = None
    result: Mapping[str, Any] | None = None


class IntentStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    def claim(self, keys: Sequence[str], *, organization_id: str, connection_id: str | None, action: str,
              reconcile_seconds: float, now: datetime | None = None) -> dict[str, Claim]:
        """Claim each key for sending, in one transaction: new and pending intents are marked `sending`; an
        intent still `sending` from an earlier attempt is resent only once `reconcile_seconds` have passed since
        that attempt (its answer, or the provider's webhook naming it, may still come)."""
        now = now or utcnow()
        out: dict[str, Claim] = {}
        with self.store.session() as s:
            rows = {r.key: r for r in s.exec(select(SendIntent).where(col(SendIntent.key).in_(list(keys)))).all()}
            for key in keys:
                row = rows.get(key)
                if row is None:
                    row = SendIntent(key=key, organization_id=organization_id, connection_id=connection_id,
                                     action=action, state=IntentState.SENDING.value, attempts=1,
                                     last_attempt_at=now)
                    s.add(row)
                    out[key] = Claim(row, send=True)
                    continue
                out[key] = self._decide(s, row, reconcile_seconds, now)
            try:
                s.commit()
            except IntegrityError:  # another process created one of these keys first: decide again on its row
                s.rollback()
                return self.claim(keys, organization_id=organization_id, connection_id=connection_id,
                                  action=action, reconcile_seconds=reconcile_seconds, now=now)
        return out

    def _decide(self, s: Session, row: SendIntent, reconcile_seconds: float, now: datetime) -> Claim:
        if row.state in (IntentState.ACCEPTED.value, IntentState.FAILED.value):
            return Claim(row, send=False)
        resend = row.state == IntentState.SENDING.value
        if resend and row.last_attempt_at is not None:
            waited = (now - row.last_attempt_at).total_seconds()
            if waited < reconcile_seconds:
                return Claim(row, send=False, wait_seconds=reconcile_seconds - waited)
        # Compare-and-set on the attempt counter: two claimers of one intent cannot both send.
        done = s.exec(update(SendIntent).where(col(SendIntent.key) == row.key,
                                               col(SendIntent.attempts) == row.attempts)
                      .values(state=IntentState.SENDING.value, attempts=row.attempts + 1,
                              resent=row.resent + (1 if resend else 0), last_attempt_at=now, updated_at=now))
        if done.rowcount != 1:
            return Claim(row, send=False, wait_seconds=max(1.0, reconcile_seconds))
        row.state, row.attempts, row.resent, row.last_attempt_at = (IntentState.SENDING.value, row.attempts + 1,
                                                                    row.resent + (1 if resend else 0), now)
        return Claim(row, send=True, resend=resend)

    def settle(self, outcomes: Sequence[Settle]) -> None:
        """Record attempts' outcomes in one transaction. An accepted intent is never moved back (a status webhook
        may have settled it before the answer came)."""
        if not outcomes:
            return
        with self.store.session() as s:
            self.settle_in(s, outcomes)
            s.commit()

    @staticmethod
    def settle_in(s: Session, outcomes: Sequence[Settle]) -> None:
        """`settle` inside the caller's transaction (the action's own, `Store.record_action`)."""
        now = utcnow()
        for o in outcomes:
            values: dict[str, Any] = {"state": o.state.value, "updated_at": now}
            if o.provider_ref is not None:
                values["provider_ref"] = o.provider_ref
            if o.result is not None:
                values["result"] = dict(o.result)
            s.exec(update(SendIntent).where(
                col(SendIntent.key) == o.key, col(SendIntent.state) != IntentState.ACCEPTED.value).values(**values))

    def accept_by_id(self, intent_id: str, provider_ref: str, result: Mapping[str, Any]) -> bool:
        """The provider named this intent in a webhook (WhatsApp's biz_opaque_callback_data): it was accepted,
        whatever happened to the answer of the request. True when this changed the intent."""
        with self.store.session() as s:
            done = s.exec(update(SendIntent).where(
                col(SendIntent.id) == intent_id, col(SendIntent.state) != IntentState.ACCEPTED.value,
                col(SendIntent.state) != IntentState.FAILED.value,
            ).values(state=IntentState.ACCEPTED.value, provider_ref=provider_ref, result=dict(result),
                     updated_at=utcnow()))
            s.commit()
            return bool(done.rowcount)

    def get(self, keys: Sequence[str]) -> dict[str, SendIntent]:
        with self.store.session() as s:
            return self.get_in(s, keys)

    @staticmethod
    def get_in(s: Session, keys: Sequence[str]) -> dict[str, SendIntent]:
        return {r.key: r for r in s.exec(select(SendIntent).where(col(SendIntent.key).in_(list(keys)))).all()}

    def resends(self, organization_id: str, since: timedelta = timedelta(days=1)) -> int:
        """How many sends were made while an earlier attempt's outcome was unknown (possible duplicates)."""
        with self.store.session() as s:
            rows = s.exec(select(SendIntent.resent).where(SendIntent.organization_id == organization_id,
                                                          SendIntent.updated_at >= utcnow() - since)).all()
        return sum(rows)
