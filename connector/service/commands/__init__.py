"""One module per CLI area; ``connector.service.cli`` attaches them to the main group."""
