"""A faithful local Bitrix24: OAuth, REST, CRM, events and the offline queue, batch,
limits, Push&Pull and fault injection.

This package imports nothing from the rest of ``connector`` (a layering test enforces
it), so a misreading of the Bitrix24 docs cannot hide on both sides of a test.
``docs/emulator-checklist.md`` maps the digest's §11.1 checklist to code and tests.

Layout (each module holds one idea):

* Plumbing: ``clock`` (wall and test clock), ``rest_errors`` (``RestError``), ``context``
  (``CallContext``: app, user, connector, webhook), ``registry`` (method name → handler),
  ``params`` (PHP bracket query strings and forms, JSON bodies).
* The portal: ``portal`` (``Portal``: one portal's parts; importing it registers their
  REST methods), ``portal_profile`` (``PlanProfile``, ``PLANS``, ``User``),
  ``portal_contract`` (``PortalContract``: what a part may use of its portal) and
  ``portal_view`` (``PortalView``: the portal as a REST handler sees it).
* The HTTP face: ``app`` (``Emulator`` and the Starlette app), ``request_handling``
  (the REST, webhook and OAuth handlers mixed into ``Emulator``), ``request_log``
  (``LogEntry``), ``webhooks`` (``Webhook``), ``dispatch`` (the checks every call passes:
  lookup, webhook refusal, scope, limits, faults), ``oauth`` (the ``oauth.bitrix.info``
  stand-in), ``limits`` (leaky bucket, operating time, faults), ``batch``, ``meta``
  (``methods``, ``scope``, ``app.info``, ``profile``…).
* CRM: ``crm`` (``CrmStore``: state and writes), ``crm_query`` (its reads: the ID index,
  ``get``, ``list``), ``crm_methods`` (``crm.<entity>.*``), ``crm_fields`` (field
  definitions and value shapes), ``crm_userfields`` (``UF_CRM_*``) and
  ``crm_userfield_methods`` (``crm.<entity>.userfield.*``), ``multifields`` (PHONE,
  EMAIL, WEB, IM), ``filter_ops`` (list filters and orders).
* Events: ``events`` (bindings, firing), ``event_methods`` (``event.bind/unbind/get``),
  ``event_access`` (who may call what, connector partitions), ``offline_queue`` (the §7.12
  state machine), ``offline_methods`` (``event.offline.*``, ``feature.get``).
* Push&Pull: ``pull`` (``PullHub``: state, publishing, control commands),
  ``pull_connections`` (its connection side: parsing, subscribers, faults, waiting),
  ``pull_subscribers`` (``SubscribeRequest``, ``Refusal``, ``Subscriber``, ``Close``),
  ``pull_settings`` (``PullSettings``), ``pull_config`` (the
  ``pull.application.config.get`` answer), ``pull_methods`` (that REST method),
  ``pull_channels``, ``pull_framing`` (v3 NGINX markers, v4 JSON arrays, v5),
  ``pull_endpoints`` (WebSocket and long polling).
* Driving it: ``control`` (the Python control API, ``ControlAPI``: apps, tokens, users,
  deliveries; the table of operations), mixing in ``control_crm`` (act as a UI user, seed
  data), ``control_limits`` (plan, limits, faults) and ``control_inspection`` (request log,
  queue, clock, Push&Pull commands, state) over ``control_base``; ``control_http`` (the
  same under ``/_emulator/``), ``server`` (uvicorn on loopback, HTTPS with a throwaway
  test CA).
"""
