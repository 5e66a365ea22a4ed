"""netcfg/log.py: syslog priorities, the `<N>` prefix on every line, the
journal fields of a device's records, and when stderr counts as the journal."""

from __future__ import annotations

import logging
import os

import pytest

from netcfg import log
from netcfg.session import Owner


@pytest.mark.parametrize("level, prio", [
    (logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6),
    (log.VERB1, 7), (log.VERB2, 7), (logging.DEBUG, 7),
])
def test_priority(level, prio):
    assert log.priority(level) == prio


def record(level=logging.WARNING, msg="teardown incomplete", **extra) -> logging.LogRecord:
    r = logging.LogRecord("netcfg.session", level, __file__, 1, msg, None, None)
    r.__dict__.update(extra)
    return r


def test_prefix_on_every_line_and_no_timestamp():
    text = log.PrefixFormatter(log.JOURNAL_FORMAT).format(record(msg="first\nsecond"))
    assert text == "<4>[WARNING] netcfg.session: first\n<4>second"


def test_device_and_owner_fields():
    owner = Owner(uid=998, pid=4242, bus_name=":1.17")
    fields = log.record_fields(record(netcfg_path="/net/openvpn/v3/netcfg/3", netcfg_owner=owner))
    assert fields == {"NETCFG_DEVICE_PATH": "/net/openvpn/v3/netcfg/3", "NETCFG_OWNER_UID": "998",
                      "NETCFG_OWNER_PID": "4242", "NETCFG_OWNER_BUS_NAME": ":1.17"}
    assert log.record_fields(record()) == {}


def test_stderr_is_journal_compares_fd_2():
    st = os.fstat(2)
    assert log.stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    assert not log.stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
    assert not log.stderr_is_journal({"JOURNAL_STREAM": "junk"})
    assert not log.stderr_is_journal({})


def test_journal_mode():
    assert log.journal_mode("prefix", "/var/log/x.log") == "off"  # a log file gets timestamps
    assert log.journal_mode("prefix", None) == "prefix"
    assert log.journal_mode("off", None) == "off"
    if log.journal_binding() is None:
        with pytest.raises(ValueError, match="python3-systemd"):
            log.journal_mode("native", None)
