"""Per-topic accounting of a bag job: every input message is either in the output or reported.

A job that reads a bag (the labeller, the LeRobot export) counts, per topic, what the input
claims to hold — ``metadata.yaml``'s count and the storage files' own count — what it read and
what it wrote. A message that the input holds and the output lacks is lost; a job with losses
fails with :class:`MessageLossError`, whose one line names the topics and counts, unless the user
accepted the loss (``--accept-loss``), and its report lists them either way
(``docs/design.md``, "Recorded data").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from egopress_core.errors import DataError


class MessageLossError(DataError):
    """Input messages did not reach the output (the message names topics and counts)."""


@dataclass(frozen=True)
class TopicAccount:
    """One input topic's counts.

    Attributes:
        topic: the topic name.
        metadata: messages ``metadata.yaml`` lists (None: a single-file bag, or a topic only the
            storage files know).
        storage: messages the storage files' own index holds.
        read: messages read back from the storage files.
        written: messages that reached the output.
    """

    topic: str
    metadata: int | None
    storage: int
    read: int
    written: int

    @property
    def expected(self) -> int:
        """What the input holds by its own account: the larger of the two claims."""
        return max(self.metadata or 0, self.storage)

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.written)

    def describe(self) -> str:
        claims = f"storage {self.storage}" if self.metadata is None else f"metadata {self.metadata}, storage {self.storage}"
        return f"{self.topic} {self.written} of {self.expected} ({claims}, read {self.read})"

    def to_dict(self) -> dict:
        return {**asdict(self), "expected": self.expected, "lost": self.lost}


def account(topic_counts: dict[str, dict[str, int | None]], read: dict[str, int],
            written: dict[str, int]) -> list[TopicAccount]:
    """Accounts of every input topic (``topic_counts`` as :meth:`BagReader.topic_counts`)."""
    return [TopicAccount(topic, counts["metadata"], int(counts["storage"] or 0), int(read.get(topic, 0)),
                         int(written.get(topic, 0)))
            for topic, counts in sorted(topic_counts.items())]


def losses(accounts: list[TopicAccount]) -> list[TopicAccount]:
    return [item for item in accounts if item.lost]


def loss_summary(accounts: list[TopicAccount]) -> str | None:
    """One line naming every topic that lost messages, or None when nothing was lost."""
    lossy = losses(accounts)
    if not lossy:
        return None
    lost = sum(item.lost for item in lossy)
    expected = sum(item.expected for item in accounts)
    return f"{lost} of {expected} input messages did not reach the output: " + "; ".join(item.describe() for item in lossy)


def check(accounts: list[TopicAccount], accept_loss: bool, what: str) -> str | None:
    """Raise :class:`MessageLossError` when messages were lost and the loss was not accepted;
    return the summary line (None: nothing lost)."""
    summary = loss_summary(accounts)
    if summary is not None and not accept_loss:
        raise MessageLossError(f"{summary}. {what}")
    return summary
