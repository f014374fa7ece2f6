"""pnccface.models."""
