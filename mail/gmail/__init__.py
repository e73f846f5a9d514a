"""Gmail: OAuth 2.0, the API client built from the discovery document, batching and quota.

How Gmail behaves, as far as sync is concerned: every message is in All Mail and carries label
ids (INBOX, SENT, SPAM, TRASH, user labels); a message id never changes and neither does its
internalDate; historyId grows with every change to the mailbox, and history.list answers 404
when the start id is older than what Google retains (about a week), which means a full resync.
"""
