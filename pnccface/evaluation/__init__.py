"""pnccface.evaluation."""
