"""The same service on dbus-broker, the system bus of Fedora, Arch and RHEL.

dbus-broker applies the same policy files but is a different
implementation (its own policy engine, no eavesdropping, stricter about
some messages), and netcfg's users are on both.  Tests written for the
dbus-daemon bus run here unchanged: this module imports them, and its
module-scoped `bus` fixture (and the imported modules' own fixtures, such as
test_hostile's `device`) puts a private dbus-broker (support/brokerbus.py)
with the same configuration, including dbus-policy/, behind every fixture
that uses the bus (the service, root_bus, clients as other users).
"""

from __future__ import annotations

import pytest

from support.brokerbus import BrokerBus, available
from test_authz import test_matrix_on_one_device, test_unprivileged_user_policy  # noqa: F401
from test_cleanup import test_client_killed_after_establish  # noqa: F401
from test_establish import test_establish_rolls_back_on_kernel_refusal, test_happy_path_as_openvpn  # noqa: F401
from test_events import test_events_filters_order_unicast, test_subscriber_list_and_leaving_the_bus  # noqa: F401
from test_hostile import (  # noqa: F401
    device, test_forged_name_owner_changed_is_ignored, test_invalid_messages_disconnect_the_sender_only,
    test_unexpected_fds_are_closed, test_what_an_unprivileged_user_can_send,
)
from test_log_and_properties import test_log_signals_to_the_log_service  # noqa: F401
from test_protect import test_redirect_protect_and_exclude  # noqa: F401
from test_service_lifetime import (  # noqa: F401
    test_restart_after_sigkill_undoes_the_journal, test_signal_tears_everything_down,
)

pytestmark = pytest.mark.asyncio
# test_protect.py puts this on its whole module; an import does not carry it.
test_redirect_protect_and_exclude = pytest.mark.netns(uplink=True)(test_redirect_protect_and_exclude)


@pytest.fixture(scope="module")
def bus(users):
    if not available():
        pytest.fail("dbus-broker is not installed: scripts/setup.sh installs it")
    broker = BrokerBus().start()
    yield broker
    alive = broker.proc.poll() is None
    broker.cleanup()
    assert alive, "the test dbus-broker died:\n" + broker.log_text()
