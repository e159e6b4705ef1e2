"""The recipe's app: the project's TrackingClient, a view and the push_tracking command."""
