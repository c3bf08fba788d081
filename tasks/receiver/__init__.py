"""The webhook receiver: the aggregator's status callbacks and inbound replies, into the store.

    app      the ASGI app: checks X-Twilio-Signature, answers once a post is in the inbox
    inbox    the receiver's own SQLite file (WAL, synchronous=FULL, group commit): durable
             intake that never waits for DuckDB, which another process may hold
    drain    inbox ──► DuckDB in batches, one short write transaction each (statuses forward
             only, replies attributed to the campaign that wrote last, Twilio 21610 opt-outs)
    server   uvicorn on a socket (`smartchat serve`), or in a thread for tests

    aggregator ──POST──► app ──group commit──► inbox.sqlite ──drain (every ~1 s)──► DuckDB

Settings arrive as objects (GatewaySettings: auth token, public URL; ReceiverSettings: inbox,
port; StoreSettings): nothing here reads the environment.
"""

from tasks.receiver.app import ReceiverApp
from tasks.receiver.drain import DrainResult, drain_inbox

__all__ = ["DrainResult", "ReceiverApp", "drain_inbox"]
