"""Event webhooks: the tenant's endpoints, and one signed Standard Webhooks message per event."""
