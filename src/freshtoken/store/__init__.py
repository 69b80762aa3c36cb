"""The connection store: ORM models and the repository the API and refresh engine use."""
