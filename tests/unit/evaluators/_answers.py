"""Answers to one short-answer question, genuine and gamed, for the keyword tests."""

from __future__ import annotations

from protocol.definition import ShortAnswerQuestion

KEYWORDS = ("b-tree", "lookup", "scan", "storage")
SAMPLE = (
    "An index keeps the keys in a sorted structure such as a B-tree, so a lookup "
    "reads a few pages instead of a full table scan; the price is extra storage "
    "and slower writes, since every insert or update must also change the index."
)

GENERIC_WORDS = (
    "scalability", "latency", "throughput", "cache", "index", "thread", "mutex",
    "semaphore", "deadlock", "race condition", "lock", "transaction", "atomicity",
    "consistency", "isolation", "durability", "replication", "sharding", "partition",
    "consensus", "quorum", "leader election", "load balancer", "proxy", "queue",
    "stream", "idempotency", "retry", "backoff", "timeout", "heartbeat", "checksum",
    "hash", "b-tree", "lookup", "scan", "join", "normalization", "storage",
    "query planner", "write-ahead log", "snapshot", "mvcc", "garbage collection",
    "heap", "stack", "recursion", "complexity", "big-o", "memoization", "api",
    "rest", "grpc", "tls", "encryption", "kubernetes",
)  # fmt: skip
GENERIC_LIST = ", ".join(GENERIC_WORDS)
PASTED = ", ".join(KEYWORDS)
PASTED_LINES = "\n".join(f"- {keyword}" for keyword in KEYWORDS)
REPEATED = " ".join(KEYWORDS * 10)
TEMPLATED = " ".join(f"The {word} is important." for word in GENERIC_WORDS)
SENTENCE_THEN_LIST = f"A B-tree makes a lookup fast. {GENERIC_LIST}"

GOOD = (
    "An index stores the column's values in a B-tree, sorted, so the database can "
    "find a row with a lookup that touches a handful of pages rather than a full "
    "table scan. The cost is extra storage and slower writes, because every insert, "
    "update and delete has to maintain the index as well."
)
GOOD_BULLETS = (
    "- B-tree: the keys are kept sorted in a shallow tree.\n"
    "- A lookup therefore reads a few pages instead of a scan of the whole table.\n"
    "- The price is more storage, and every write has to update the index too."
)
SHORT = (
    "The B-tree turns a full scan into a logarithmic lookup, at the cost of storage."
)
OFF_TOPIC = (
    "Kubernetes schedules containers across a cluster of machines. Each pod gets its "
    "own network address, and a service balances traffic between pods. Consensus "
    "protocols such as Raft elect a leader and replicate a log to followers. TLS "
    "encrypts traffic between clients and servers with certificates. Garbage "
    "collection frees memory that is no longer reachable from the roots. A mutex "
    "prevents two threads from entering a critical section at the same time. "
    "Sharding splits data across nodes so that each one holds a partition. "
    "Idempotent retries with exponential backoff make clients resilient to "
    "timeouts. A message queue decouples producers from consumers and absorbs "
    "bursts. Memoization caches the results of pure functions by their arguments. "
    "Big-O notation describes how the running time grows with the input. gRPC "
    "sends protocol buffers over HTTP/2 streams between services."
)
OFF_TOPIC_WITH_KEYWORDS = (
    f"{OFF_TOPIC} Also, a B-tree helps a lookup avoid a scan and costs storage."
)


def index_question(points: float = 10) -> ShortAnswerQuestion:
    return ShortAnswerQuestion.model_validate(
        {
            "type": "short_answer",
            "text": "How does a database index speed up reads, and what does it cost?",
            "expected_keywords": list(KEYWORDS),
            "sample_solution": SAMPLE,
            "points": points,
            "time_limit_s": 120,
        }
    )
