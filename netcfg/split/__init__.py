"""Per-application split tunnelling: programs outside the tunnel, or only inside it (docs/split-tunnel.md)."""
