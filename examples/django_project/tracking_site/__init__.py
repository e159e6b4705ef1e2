"""The Django recipe's project package: settings and URLs."""
