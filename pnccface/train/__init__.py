"""pnccface.train."""
