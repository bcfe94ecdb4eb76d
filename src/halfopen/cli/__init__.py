"""The `halfopen` command line: thin; parses, calls the pieces, renders."""
