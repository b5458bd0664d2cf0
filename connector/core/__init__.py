"""The pure core: no I/O, no httpx/sqlalchemy/websockets imports (a test enforces it)."""
