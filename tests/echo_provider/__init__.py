"""A provider that exists only in the tests: it proves a new provider needs its own folder and one registry line."""
