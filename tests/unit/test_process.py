"""netcfg/process.py: real child processes in each state of their exit.

The decision "has the client begun to exit?" is read from the kernel's
order (PF_EXITING is set before the files are closed), never from a wait:
a process that has begun to exit counts as ending even while its pidfd is
not readable yet."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time

import pytest

from netcfg.process import ClientProcess

SYS_EXIT = {"x86_64": 60, "aarch64": 93}.get(platform.machine())  # exit(2): the calling thread only


def wait_for(predicate, what: str, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_live_process_is_not_ending():
    child = subprocess.Popen(["sleep", "30"])
    process = ClientProcess(child.pid)
    try:
        assert process.is_ending() is False
    finally:
        child.kill()
        child.wait()
        process.close()


def test_a_zombie_and_a_reaped_process_are_ending():
    child = subprocess.Popen(["sleep", "30"])
    process = ClientProcess(child.pid)
    try:
        child.kill()
        wait_for(lambda: open(f"/proc/{child.pid}/stat").read().split(")")[-1].split()[0] == "Z",
                 "the child to be a zombie")
        assert process.is_ending() is True
        child.wait()  # reaped: the pid may belong to someone else soon; the pidfd still knows
        assert process.is_ending() is True
    finally:
        process.close()


def test_a_process_gone_before_the_device_was_created_is_ending():
    child = subprocess.Popen(["true"])
    child.wait()
    process = ClientProcess(child.pid)
    assert process.is_ending() is True
    process.close()


@pytest.mark.skipif(SYS_EXIT is None, reason=f"exit(2) number unknown on {platform.machine()}")
def test_a_process_that_has_begun_to_exit_is_ending_before_its_pidfd_says_so():
    """The main thread has exited (PF_EXITING, a zombie leader) while another
    thread still runs: the pidfd is not readable (the thread group is not
    empty), yet the process is on its way out, and says so.  This is the
    state a SIGKILLed client is in while the kernel deletes its tuns."""
    code = ("import ctypes, threading, time\n"
            "threading.Thread(target=time.sleep, args=(30,)).start()\n"
            f"ctypes.CDLL(None).syscall({SYS_EXIT}, 0)\n")
    child = subprocess.Popen([sys.executable, "-c", code])
    process = ClientProcess(child.pid)
    try:
        wait_for(lambda: open(f"/proc/{child.pid}/stat").read().split(")")[-1].split()[0] == "Z",
                 "the main thread to exit")
        assert not process._exited(), "the pidfd must not be readable yet: the other thread runs"
        assert process.is_ending() is True
    finally:
        os.kill(child.pid, 9)
        child.wait()
        process.close()
