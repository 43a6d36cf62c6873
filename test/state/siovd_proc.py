"""What the state suite's tests share: failing loudly, and stopping the siovd
they started (by its Popen handle, never by name)."""
import signal
import subprocess
import sys


def fail(msg):
    print("FAIL:", msg, flush=True)
    sys.exit(1)


def stop(p, timeout=60):
    """SIGTERM, then SIGKILL if siovd does not drain and exit in time."""
    if p is None or p.poll() is not None:
        return
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
