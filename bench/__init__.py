"""The failover and cost benchmark (``make bench``); see bench/README.md."""
