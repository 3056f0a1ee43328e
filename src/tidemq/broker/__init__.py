"""The broker: topics, sends and pulls, offsets, retries, transactions, and its registration with name servers."""
