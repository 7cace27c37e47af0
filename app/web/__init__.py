"""The dashboard: server-rendered pages under /app/ over the same services as the API."""
