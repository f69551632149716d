"""Database layer: SQLModel tables, engine construction, migrations and repositories."""
