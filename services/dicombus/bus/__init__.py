"""The edge side of the event bus: serialized events, the publisher, its outbox, subscriptions."""

from dicombus.bus.capture import EventCapture
from dicombus.bus.dicom_json import from_dicom_json, read_file_bulk_data, to_dicom_json
from dicombus.bus.envelope import SCHEMA_VERSION, PendingEvent, to_envelope
from dicombus.bus.event_data import EVENT_SPECS
from dicombus.bus.json_schema import json_schema, load_schema
from dicombus.bus.outbox import Outbox, OutboxError, OutboxMessage
from dicombus.bus.publisher import Publisher
from dicombus.bus.redis_server import (
    EmbeddedRedis,
    EmbeddedRedisError,
    broker_url_from_env_or_embedded,
)
from dicombus.bus.sender import task_id_for
from dicombus.bus.subscriptions import (
    REGISTRY_CHANNEL,
    REGISTRY_KEY,
    Subscription,
    SubscriptionView,
    register_subscriptions,
    unregister_subscriptions,
)

__all__ = [
    "EVENT_SPECS",
    "REGISTRY_CHANNEL",
    "REGISTRY_KEY",
    "SCHEMA_VERSION",
    "EmbeddedRedis",
    "EmbeddedRedisError",
    "EventCapture",
    "Outbox",
    "OutboxError",
    "OutboxMessage",
    "PendingEvent",
    "Publisher",
    "Subscription",
    "SubscriptionView",
    "broker_url_from_env_or_embedded",
    "from_dicom_json",
    "json_schema",
    "load_schema",
    "read_file_bulk_data",
    "register_subscriptions",
    "task_id_for",
    "to_dicom_json",
    "to_envelope",
    "unregister_subscriptions",
]
