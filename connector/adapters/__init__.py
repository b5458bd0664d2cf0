"""I/O at the edges: the REST client, the Push&Pull client, the SQL store."""
