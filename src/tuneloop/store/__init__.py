"""The store: one database (``Database``: engine, transactions, migrations) and a repository per concept over it;
``Store`` is the one handle that holds them by name (``store.dialogue``, ``store.jobs``…).

``DialogueStore`` (threads, messages, search), ``Conversations`` (threads of OpenAI's stateful APIs), ``ApiObjects``
(stored responses and completions), ``JobStore`` (jobs, events, checkpoints), ``FileStore`` (uploaded and result
files), ``BaseModels`` (registered models). The store persists what it is given; labels such as sentiment are
computed above it.
"""

from tuneloop.store.database import Database, Repository
from tuneloop.store.dialogue import DialogueStore
from tuneloop.store.handle import Store
from tuneloop.store.records import Exchange, Label, Message, Thread

__all__ = ["Database", "DialogueStore", "Exchange", "Label", "Message", "Repository", "Store", "Thread"]
