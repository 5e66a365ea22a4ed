"""netcfg/process.py: a real child process, watched through a pidfd."""

from __future__ import annotations

import asyncio
import subprocess

import pytest

from netcfg.process import has_exited


@pytest.mark.asyncio
async def test_alive_process_has_not_exited():
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert await has_exited(child.pid, 0.05) is False
    finally:
        child.kill()
        child.wait()


@pytest.mark.asyncio
async def test_exit_within_the_grace_is_seen():
    child = subprocess.Popen(["sleep", "30"])
    asyncio.get_running_loop().call_later(0.05, child.kill)
    try:
        assert await has_exited(child.pid, 5) is True  # a zombie until reaped: exited
    finally:
        child.wait()
    assert await has_exited(child.pid, 0) is True  # reaped: no such process
