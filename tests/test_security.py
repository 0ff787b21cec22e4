"""Login password checks run a few at a time, at a lower CPU priority, on threads of their own."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from app import security


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="thread priorities: Linux")
def test_a_flood_of_login_checks_queues_on_low_priority_threads(monkeypatch):
    own_niceness = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen: list[tuple[str, int]] = []
    running, most = 0, 0
    lock = threading.Lock()

    def slow_check(password_hash: str, password: str) -> bool:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
            me = threading.current_thread()
            seen.append((me.name, os.getpriority(os.PRIO_PROCESS, threading.get_native_id())))
        time.sleep(0.02)
        with lock:
            running -= 1
        return password == "right"

    def check(_: int) -> bool | str:
        try:
            return security.verify_login_password("h", "wrong")
        except security.PasswordWorkBusy:
            return "busy"

    monkeypatch.setattr(security, "verify_password", slow_check)
    with ThreadPoolExecutor(24) as flood:
        answers = list(flood.map(check, range(24)))

    assert set(answers) <= {False, "busy"} and False in answers
    assert security.verify_login_password("h", "right") is True
    assert most <= max(1, (os.cpu_count() or 2) // 2)
    assert {name.split("_")[0] for name, _ in seen} == {"login-check"}
    expected = min(19, own_niceness + security.LOGIN_CHECK_NICENESS)
    assert {niceness for _, niceness in seen} == {expected}


def test_past_the_waiting_bound_a_check_is_refused_at_once(monkeypatch):
    release = threading.Event()

    def blocked_check(password_hash: str, password: str) -> bool:
        release.wait(10)
        return False

    monkeypatch.setattr(security, "verify_password", blocked_check)
    with ThreadPoolExecutor(security.MAX_WAITING_PASSWORD_WORK) as waiting:
        futures = [
            waiting.submit(security.verify_login_password, "h", "p")
            for _ in range(security.MAX_WAITING_PASSWORD_WORK)
        ]
        deadline = time.monotonic() + 5
        while security._waiting._value > 0:  # every slot taken by a waiting check
            assert time.monotonic() < deadline
            time.sleep(0.01)
        started = time.monotonic()
        with pytest.raises(security.PasswordWorkBusy):
            security.hash_new_password("a new password")
        assert time.monotonic() - started < 0.5  # refused without waiting
        release.set()
        assert [f.result() for f in futures] == [False] * security.MAX_WAITING_PASSWORD_WORK
    assert security.verify_login_password("h", "p") is False  # the slots are free again
