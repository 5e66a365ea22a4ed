"""netcfgctl: the admin command line of netcfg (docs/netcfgctl.md, netcfgctl(8)).

It talks to the running service over D-Bus only (bus.py), through the
original interface and the root-only admin interface
`net.openvpn.v3.netcfg.admin`; `config` edits the two configuration files
as `openvpn3-admin netcfg-service` would.  One module per command under
commands/: adding a command is adding a module and naming it in
commands/__init__.py.
"""
