"""Channels: one adapter per way of reaching a holder, behind one small interface.

An adapter turns a :class:`Message` into one call of its provider and reports an
:class:`Outcome`; it never touches the database. The outbox decides what an outcome means for
the delivery (SENT, DELIVERED, a retry with backoff, FAILED).

The interface is in ``base``; ``registry.channel_for`` maps a channel's name to its adapter.
"""
