"""netcfg: the OpenVPN 3 Linux network-configuration service, in Python."""

__version__ = "0.1.0"

# The D-Bus `version` property.  Real v27 clients parse `v(\d+)` and switch
# to the old AddNetworks signature for majors <= 25 (spec 1.7); a string that
# does not start with "v" is read as "new enough".
VERSION_STRING = f"netcfg {__version__}"
