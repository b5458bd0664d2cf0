"""A faithful local Bitrix24: OAuth, REST, CRM, events and the offline queue, batch,
limits, Push&Pull and fault injection.

This package imports nothing from the rest of ``connector`` (a layering test enforces
it), so a misreading of the Bitrix24 docs cannot hide on both sides of a test.

Layout (each module holds one idea):

* ``clock``     — the wall clock and the test clock (``Clock.advance``).
* ``rest_errors`` — ``RestError``: an error code, description and HTTP status.
* ``context``   — ``CallContext``: who calls (app, user, connector, webhook or OAuth).
* ``registry``  — ``MethodRegistry`` and ``MethodResult``: REST method name → handler.
* ``portal``    — ``Portal``: the state of one portal (plan, apps, users, CRM store,
  event bindings, offline queue, pull hub, limiter, faults, request log).
* ``params``    — PHP bracket parsing of query strings and forms, JSON bodies.
* ``oauth``     — the ``oauth.bitrix.info`` stand-in: codes, token chains, rotation.
* ``limits``    — leaky bucket, operating-time accounting, fault switches.
* ``crm``       — crm.{lead,contact,company,deal}.* with multi-fields and UF_CRM_*.
* ``events``    — event.bind/unbind/get, firing entity events into the queue.
* ``offline_queue`` — the §7.12 state machine and event.offline.*.
* ``batch``     — the ``batch`` method.
* ``pull``      — Push&Pull: config.get, channels, WebSocket and long-poll endpoints.
* ``control``   — the control surface for tests and demos (``/_emulator/...``).
* ``app``       — the Starlette application that ties the above to HTTP.
* ``server``    — serving it on loopback over HTTP or HTTPS (trustme test CA).
"""
