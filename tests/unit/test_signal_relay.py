"""runner.install_signals: a signal that arrives while the main thread holds the worker's
lock must still stop the worker (the handler used to call stop() itself and deadlock)."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import os, signal, sys, threading, time
    from mi_worker.runner import install_signals

    lock = threading.Lock()          # stands for Worker._lock, taken by Worker.stop()
    stopped = threading.Event()

    def stop():
        with lock:
            stopped.set()

    install_signals(stop)
    with lock:                        # the claim loop holds the lock ...
        os.kill(os.getpid(), signal.SIGTERM)   # ... when the signal arrives
        time.sleep(0.3)               # the handler runs in this thread meanwhile
    print("stopped" if stopped.wait(10) else "not stopped", flush=True)
    {second}
""")


def run_child(second: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHILD.format(second=second)], cwd=str(ROOT),
                          capture_output=True, text=True, timeout=30)


def test_signal_while_the_main_thread_holds_the_lock_still_stops():
    done = run_child()
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "stopped"


def test_second_signal_exits_at_once_with_1():
    done = run_child("os.kill(os.getpid(), signal.SIGTERM); time.sleep(10); print('alive')")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "alive" not in done.stdout


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="no SIGUSR1 on this platform")
def test_sigusr1_dumps_every_thread_and_the_process_runs_on():
    child = textwrap.dedent("""
        import os, signal, time
        from mi_worker.runner import install_signals
        install_signals(lambda: None)
        os.kill(os.getpid(), signal.SIGUSR1)
        time.sleep(0.3)
        print("alive", flush=True)
    """)
    done = subprocess.run([sys.executable, "-c", child], cwd=str(ROOT), capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.strip() == "alive", done.stderr
    assert "mi_worker/runner.py" in done.stderr and "relay" in done.stderr  # the mi-signal thread
    assert "Current thread" in done.stderr
