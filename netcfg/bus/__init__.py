"""The D-Bus faces.  The only package that imports dbus_fast."""

INTERFACE = "net.openvpn.v3.netcfg"
BUS_NAME = "net.openvpn.v3.netcfg"
