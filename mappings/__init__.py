"""The shipped entity mappings; installed as ``connector.default_mappings``.

Only the ``*.yaml`` files matter: this file exists so the folder can ship inside the wheel,
where ``b24-connector`` falls back to it when ``B24_MAPPINGS_DIR`` (default ``mappings``)
does not exist in the working directory.
"""
