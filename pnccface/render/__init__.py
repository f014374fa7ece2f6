"""pnccface.render."""
