"""What every native route shares: credentials, problem+json, JSON responses."""
