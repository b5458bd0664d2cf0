"""b24-connector: two-way sync between a Bitrix24 portal's CRM and a local SQL database."""

__version__ = "0.1.0.dev0"
