"""WhatsApp Cloud API facts as data: auth, base URL, documented limits, connection settings."""

from __future__ import annotations

from core.plugin import ProviderSpec, RateLimitSpec

DEFAULT_THROUGHPUT_MPS = 80  # per business number; 20 for coexistence numbers, up to 1,000 after upgrade
MAX_THROUGHPUT_MPS = 1000
PAIR_LIMIT_PERIOD_SECONDS = 6.0  # about one message per 6 s from one number to one customer
PAIR_BURST = 45  # "bursts up to 45 messages in 6 s, then blocked until the borrowed time has passed"
MESSAGING_LIMIT_WINDOW_SECONDS = 24 * 3600.0  # unique customers outside a window, moving 24 h
DEFAULT_MESSAGING_LIMIT = 250  # a new business portfolio
# `messaging_limit_tier` (deprecated by Meta, still enumerated) and today's portfolio levels.
MESSAGING_LIMIT_TIERS: dict[str, int | None] = {
    "TIER_50": 50, "TIER_250": 250, "TIER_1K": 1000, "TIER_2K": 2000, "TIER_10K": 10_000,
    "TIER_100K": 100_000, "TIER_UNLIMITED": None, "UNLIMITED": None,
}
CUSTOMER_SERVICE_WINDOW_SECONDS = 24 * 3600
# No margin on Meta's limits: the limiter holds each slot until Meta's answer (core.limiter.Limit), so a
# request delayed on the way (network jitter, a CPython GC pause, a starved process) keeps its slot for as long
# as it was delayed. `limit_margin_seconds` on a connection still widens every window if ever needed.
LIMIT_MARGIN_SECONDS = 0.0
# Throughput is paced evenly over each second (GCRA, one message every 1/80 s), and a tenth of a second's worth
# may go together to catch up after a delay (a GC pause, a slow answer holding a slot), so one late message does
# not push every later one back for good. The window (80 in any second of Meta's clock) holds regardless.
THROUGHPUT_BURST = DEFAULT_THROUGHPUT_MPS // 10
TEMPLATE_CACHE_SECONDS = 300.0

# Connection settings this plugin reads (non-secret; `osi connections add --setting k=v`).
SETTINGS_DOC: dict[str, str] = {
    "phone_number_id": "business phone number id (required)",
    "waba_id": "WhatsApp Business Account id (templates)",
    "portfolio_id": "business portfolio sharing the messaging limit (default: waba_id)",
    "throughput_mps": f"messages per second for this number (default {DEFAULT_THROUGHPUT_MPS}; 20 for coexistence)",
    "pair_period_seconds": f"pair limit period (default {PAIR_LIMIT_PERIOD_SECONDS})",
    "pair_burst": f"pair limit burst (default {PAIR_BURST}; 1 = strictly one per period)",
    "messaging_limit": "unique customers outside a window per 24 h: 250 | 2000 | 10000 | 100000 | unlimited",
    "messaging_limit_window_seconds": "length of the moving messaging-limit window (default 86400)",
    "template_cache_seconds": f"template list cache TTL (default {TEMPLATE_CACHE_SECONDS})",
    "require_opt_in": "refuse template sends to customers without a recorded opt-in (default true)",
    "allow_opted_out": "send to customers who opted out (default false)",
    "window_gate": "free-form outside the 24 h window: known (refuse when the store knows it closed, default), "
                   "strict (refuse unless the store knows it is open), off (let Meta answer 131047)",
    "auto_opt_out": "a STOP keyword from the customer opts them out (default true)",
    "opt_out_keywords": "list of keywords that opt a customer out of everything",
    "marketing_opt_out_keywords": "list of keywords that opt a customer out of marketing only",
    "limit_margin_seconds": f"seconds added to every limit window (default {LIMIT_MARGIN_SECONDS}: slots are held "
                            "until Meta's answer, which covers arrival jitter)",
    "api_version": "Graph API version (default from OSI_WHATSAPP_API_VERSION)",
}

SPEC = ProviderSpec(
    name="whatsapp",
    integration_type="WHATSAPP_BUSINESS",
    auth_kind="bearer",
    scopes=("whatsapp_business_messaging", "whatsapp_business_management"),
    rate_limits={
        "throughput": RateLimitSpec("whatsapp.throughput", DEFAULT_THROUGHPUT_MPS, 1.0,
                                    "messages per second per number, paced evenly",
                                    margin=LIMIT_MARGIN_SECONDS, burst=THROUGHPUT_BURST),
        "pair": RateLimitSpec("whatsapp.pair", PAIR_BURST, PAIR_BURST * PAIR_LIMIT_PERIOD_SECONDS,
                              "about 1 message per 6 s per (number, customer), bursts up to 45",
                              margin=LIMIT_MARGIN_SECONDS),
        "messaging_limit": RateLimitSpec("whatsapp.portfolio", DEFAULT_MESSAGING_LIMIT, MESSAGING_LIMIT_WINDOW_SECONDS,
                                         "unique customers outside a window per moving 24 h per portfolio",
                                         margin=LIMIT_MARGIN_SECONDS),
    },
    # Throughput (130429), pair (131056), app-level (4) and account-level (80007) throttling.
    throttle_codes=frozenset({4, 80007, 130429, 131056}),
    secret_settings=("token", "app_secret", "verify_token"),
    required_settings=("phone_number_id",),
)
