"""The DuckDB store: one file holding chatbots, campaigns, contacts, messages and replies.

    connection   open for one short unit of work, write in one transaction, bulk-load a frame
    migrations   the schema as versioned .sql files (migrations/), applied on open
    rows         rows as dataclasses, matched by column name
    chatbots     chatbot versions
    campaigns    campaigns and their progress views
    contacts     each campaign's frozen contact list
    messages     outbound SMS and their forward-only statuses (schemas.messages)
    replies      inbound SMS, attributed to the campaign that last wrote to the number
    opt_outs     numbers that asked not to be texted
    conversations  each contact's place in the chatbot, and the replies yet to read

Callers pass a `StoreSettings` (which file, how long to wait for another process's lock): the
store never reads the environment.
"""

from tasks.store.connection import Connection, open_store, transaction, write_transaction

__all__ = ["Connection", "open_store", "transaction", "write_transaction"]
