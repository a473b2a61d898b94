"""Slack Web API facts as data: methods (HTTP verb, tier, scopes), tiers, limits, auth."""

from __future__ import annotations

from dataclasses import dataclass

from core.plugin import ProviderSpec, RateLimitSpec


@dataclass(frozen=True)
class MethodSpec:
    """One Web API method: how it is called, its rate-limit tier and the bot scopes it needs.

    `scopes` lists alternatives: any one of them is enough (conversations.* accept channels:read for
    public channels, groups:read for private ones, and so on). An empty tuple needs no scope.
    """

    name: str
    http: str  # "POST" (JSON body) or "GET" (query parameters)
    tier: str  # "tier1".."tier4" or "special"
    scopes: tuple[str, ...] = ()


# Per method per workspace per app (api.slack.com rate-limits page): calls per minute.
TIER_PER_MINUTE: dict[str, int] = {"tier1": 1, "tier2": 20, "tier3": 50, "tier4": 100}
# chat.postMessage: "one message per second per channel" (short bursts tolerated, not relied upon).
POST_PER_CHANNEL = 1
POST_PER_CHANNEL_PERIOD = 1.0
# No margins: the limiter holds a slot until Slack's answer (core.limiter.Limit), so the next post to a channel
# leaves a second after Slack answered the previous one, and arrival jitter cannot squeeze two into a second.
POST_ARRIVAL_MARGIN = 0.0
TIER_ARRIVAL_MARGIN = 0.0
# Special-tier methods other than chat.postMessage (auth.test) have no published number: they get
# Tier 4's budget so a runaway loop is throttled by us before Slack does it. chat.postMessage's
# workspace-wide ceiling is unpublished too; its per-channel limit is the one we enforce.
SPECIAL_PER_MINUTE = TIER_PER_MINUTE["tier4"]

CONVERSATION_READ = ("channels:read", "groups:read", "im:read", "mpim:read")
# Reading a channel's recent messages: how a post whose answer was lost is found before posting again.
CONVERSATION_HISTORY = ("channels:history", "groups:history", "im:history", "mpim:history")
# The message metadata event type every post carries (its payload names the send intent).
INTENT_EVENT_TYPE = "osi_intent"

METHODS: dict[str, MethodSpec] = {m.name: m for m in (
    MethodSpec("auth.test", "POST", "special"),
    MethodSpec("auth.revoke", "POST", "tier3"),
    MethodSpec("chat.postMessage", "POST", "special", ("chat:write",)),
    MethodSpec("chat.update", "POST", "tier3", ("chat:write",)),
    MethodSpec("chat.postEphemeral", "POST", "tier4", ("chat:write",)),
    MethodSpec("conversations.info", "GET", "tier3", CONVERSATION_READ),
    MethodSpec("conversations.history", "GET", "tier3", CONVERSATION_HISTORY),
    MethodSpec("conversations.members", "GET", "tier4", CONVERSATION_READ),
    MethodSpec("conversations.join", "POST", "tier3", ("channels:join",)),
    MethodSpec("users.lookupByEmail", "GET", "tier3", ("users:read.email",)),
    MethodSpec("views.open", "POST", "tier4"),
)}

# Setting a bot's name or icon per message needs this scope on top of chat:write.
CUSTOMIZE_SCOPE = "chat:write.customize"

# Block Kit limits (api.slack.com block-kit reference; slack_sdk validators check per-block ones).
MAX_BLOCKS_MESSAGE = 50
MAX_BLOCKS_MODAL = 100
MAX_ATTACHMENTS = 100
MAX_TEXT_POST = 40_000  # Slack truncates longer top-level text
MAX_TEXT_UPDATE = 4_000  # chat.update answers msg_too_long above this
MAX_MODAL_TITLE = 24

# Token rotation: access tokens live 12 h; refresh this long before they expire.
ROTATION_EXPIRES_IN = 43_200

SPEC = ProviderSpec(
    name="slack",
    integration_type="SLACK",
    auth_kind="oauth2",
    scopes=("chat:write", "chat:write.customize", "channels:read", "groups:read", "im:read", "mpim:read",
            "channels:join", "users:read", "users:read.email", "commands", "channels:history", "groups:history"),
    rate_limits={
        **{tier: RateLimitSpec(f"slack.{tier}", n, 60.0, f"{tier}: {n}+ calls per minute per method per workspace",
                               margin=TIER_ARRIVAL_MARGIN) for tier, n in TIER_PER_MINUTE.items()},
        "special": RateLimitSpec("slack.special", SPECIAL_PER_MINUTE, 60.0,
                                 "special-tier methods other than chat.postMessage (auth.test)",
                                 margin=TIER_ARRIVAL_MARGIN),
        "post_per_channel": RateLimitSpec("slack.post_channel", POST_PER_CHANNEL, POST_PER_CHANNEL_PERIOD,
                                          "chat.postMessage: about one message per second per channel",
                                          margin=POST_ARRIVAL_MARGIN, burst=1),
    },
    throttle_codes=frozenset({"ratelimited", "rate_limited"}),
    secret_settings=("access_token", "refresh_token"),
    required_settings=("team_id",),
    install_path="/slack/install",
)
