"""Route modules, one router each: connections, metadata, integrations, providers, health."""
