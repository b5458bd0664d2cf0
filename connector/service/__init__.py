"""The worker that wires core and adapters, and the command line."""
