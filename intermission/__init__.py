"""intermission: hold web requests (not fail them) while the database changes hands."""
