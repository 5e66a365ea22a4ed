"""DNS: per-device resolver settings, ordering, and one backend protocol."""
