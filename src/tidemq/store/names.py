"""RocketMQ's naming rules for topics and groups (TopicValidator / Validators), checked at the edge."""

from __future__ import annotations

import re
from typing import Final

from tidemq.errors import IllegalNameError

# TopicValidator: at most 127 characters (V1 records keep the topic length in one byte),
# characters from [%|a-zA-Z0-9_-].
TOPIC_MAX_LENGTH: Final = 127
GROUP_MAX_LENGTH: Final = 255
_LEGAL: Final = re.compile(r"^[%|a-zA-Z0-9_-]+$")


def validate_topic(topic: str) -> None:
    """Raise IllegalNameError unless ``topic`` is a legal RocketMQ topic name."""
    if not topic or not topic.strip():
        raise IllegalNameError("the topic name is blank")
    if len(topic) > TOPIC_MAX_LENGTH:
        raise IllegalNameError(f"the topic name is longer than {TOPIC_MAX_LENGTH} characters: {topic[:40]!r}...")
    if not _LEGAL.match(topic):
        raise IllegalNameError(f"the topic name {topic!r} contains characters outside [%|a-zA-Z0-9_-]")


def is_legal_topic(topic: str) -> bool:
    try:
        validate_topic(topic)
    except IllegalNameError:
        return False
    return True


def validate_group(group: str) -> None:
    """Raise IllegalNameError unless ``group`` is a legal RocketMQ group name."""
    if not group or not group.strip():
        raise IllegalNameError("the group name is blank")
    if len(group) > GROUP_MAX_LENGTH:
        raise IllegalNameError(f"the group name is longer than {GROUP_MAX_LENGTH} characters")
    if not _LEGAL.match(group):
        raise IllegalNameError(f"the group name {group!r} contains characters outside [%|a-zA-Z0-9_-]")
