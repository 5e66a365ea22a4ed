"""Kernel data channel offload (ovpn-dco-v2 and mainline ovpn)."""
