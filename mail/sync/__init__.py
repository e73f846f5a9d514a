"""Gmail sync as plain Python: the store writes and the state machine the AccountSync actor drives.

Invariants: a message is stored once per account (unique provider id); the history cursor only
moves forward after the changes it covers are committed; a full sync (first, or after an
expired cursor) is resumable from its page checkpoint and reuses what is stored.
"""
