"""Standard Webhooks, the pure part: events, signatures, the retry schedule, and
which addresses may be called (https://www.standardwebhooks.com, spec 1.0.0).

No clock, no randomness, no I/O: times, random numbers and resolved addresses are
passed in; the shell (``server/webhooks/``, ``server/storage/webhooks.py``) sends,
stores and resolves.

* :mod:`protocol.webhooks.events`: the event types and the JSON body of a message;
* :mod:`protocol.webhooks.signature`: ``whsec_`` secrets, ``v1,`` signatures, the
  ``webhook-*`` headers, secrets kept during a rotation;
* :mod:`protocol.webhooks.schedule`: what an attempt's answer means (delivered,
  retry when, failed for good, endpoint gone), with jitter and ``Retry-After``;
* :mod:`protocol.webhooks.address`: endpoint URLs, and the addresses refused
  (loopback, private, link-local, multicast, reserved) against SSRF.
"""
