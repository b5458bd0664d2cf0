"""A faithful local Bitrix24: OAuth, REST, CRM, events and the offline queue, batch,
limits, Push&Pull and fault injection.

This package imports nothing from the rest of ``connector`` (a layering test enforces
it), so a misreading of the Bitrix24 docs cannot hide on both sides of a test.
``docs/emulator-checklist.md`` maps the digest's §11.1 checklist to code and tests.

Layout (each module holds one idea):

* Plumbing: ``clock`` (wall and test clock), ``rest_errors`` (``RestError``), ``context``
  (``CallContext``: app, user, connector, webhook), ``registry`` (method name → handler),
  ``params`` (PHP bracket query strings and forms, JSON bodies), ``portal`` (one portal's
  state and plan profile).
* The HTTP face: ``app`` (``Emulator`` and the Starlette app), ``dispatch`` (the checks
  every call passes: lookup, webhook refusal, scope, limits, faults), ``oauth`` (the
  ``oauth.bitrix.info`` stand-in), ``limits`` (leaky bucket, operating time, faults),
  ``batch``, ``meta`` (``methods``, ``scope``, ``app.info``, ``profile``…).
* CRM: ``crm`` (``CrmStore``), ``crm_methods`` (``crm.<entity>.*``), ``crm_fields``
  (field definitions and value shapes), ``crm_userfields`` (``UF_CRM_*``),
  ``multifields`` (PHONE, EMAIL, WEB, IM), ``filter_ops`` (list filters and orders).
* Events: ``events`` (bindings, firing), ``event_methods`` (``event.bind/unbind/get``),
  ``event_access`` (who may call what, connector partitions), ``offline_queue`` (the §7.12
  state machine), ``offline_methods`` (``event.offline.*``, ``feature.get``).
* Push&Pull: ``pull`` (``PullHub``), ``pull_config`` (``pull.application.config.get``),
  ``pull_channels``, ``pull_framing`` (v3 NGINX markers, v4 JSON arrays, v5),
  ``pull_endpoints`` (WebSocket and long polling).
* Driving it: ``control`` (the Python control API: seed data, act as a UI user, expire
  tokens, set limits, inject faults, read the request log and the queue) and
  ``control_http`` (the same under ``/_emulator/``), ``server`` (uvicorn on loopback,
  HTTPS with a throwaway test CA).
"""
