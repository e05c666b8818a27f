"""ostap: batch ML platform jobs (ODS snapshots, targets, forecasts, recommendations)."""

__version__ = "0.1.0"
