"""``python -m connector`` is the same CLI as ``b24-connector``."""

from connector.service.cli import main

if __name__ == "__main__":
    main()
