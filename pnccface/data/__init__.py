"""pnccface.data."""
