"""Leak protection: the kill switch (docs/leak-protection.md).

rules.py plans the nftables rules from a plain policy value (pure);
kernel/nft.py installs them as one table of our own.
"""
