"""Authentication (API tokens) and authorization (scopes, roles, route rules)."""
