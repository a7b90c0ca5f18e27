"""Webhooks: sending what the outbox holds (docs/design.md, "Webhooks").

The stores write deliveries in the transactions of the changes they report
(``server/storage/_outbox.py``); here :class:`~server.webhooks.dispatcher.Dispatcher`
(one per ``serve``) claims due ones, and :class:`~server.webhooks.sender.Sender`
resolves, checks, signs and posts each attempt. The rules (signatures, the retry
schedule, which addresses are refused) are pure, in :mod:`protocol.webhooks`.

Other parts use :func:`server.webhooks.resolver.checked_target` (the HTTP routes,
when an endpoint is saved) and the dispatcher (``create_app``).
"""
