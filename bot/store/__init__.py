"""The bot's persistent state (SQLite or PostgreSQL, one code path): deliveries, runs, events, results, grants,
usage and the outbox. Entry point: `store = await Store.open(url)`; see `Store` for the rules every method follows."""

from .engine import normalize_url
from .errors import DuplicateRun, EventConflict, SchemaError, StoreError, StoreUnavailable, UnknownRun
from .events import contiguous
from .models import (
    ACTIVE_RUN_STATES,
    RUN_STATES,
    TERMINAL_RUN_STATES,
    AppendResult,
    BotMessage,
    Delivery,
    DeliveryState,
    Grant,
    NewDelivery,
    NewRun,
    OutboxItem,
    OutboxState,
    PendingPlan,
    Run,
    RunState,
    StoredResult,
    Usage,
)
from .runs import UNSET
from .store import Store, StoreTransaction

__all__ = [
    "ACTIVE_RUN_STATES",
    "RUN_STATES",
    "TERMINAL_RUN_STATES",
    "UNSET",
    "AppendResult",
    "BotMessage",
    "Delivery",
    "DeliveryState",
    "DuplicateRun",
    "EventConflict",
    "Grant",
    "NewDelivery",
    "NewRun",
    "OutboxItem",
    "OutboxState",
    "PendingPlan",
    "Run",
    "RunState",
    "SchemaError",
    "Store",
    "StoreError",
    "StoreTransaction",
    "StoreUnavailable",
    "StoredResult",
    "UnknownRun",
    "Usage",
    "contiguous",
    "normalize_url",
]
