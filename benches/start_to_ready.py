"""Start to ready: spawn the release `regent` on the default policies and
time it until the first 200 on /health, over several starts; prints the
median, min and max in milliseconds. Run by `benches/load.sh`; alone:

    python3 benches/start_to_ready.py target/release/regent 10
"""
import socket
import statistics
import subprocess
import sys
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
            c.sendall(b"GET /health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            return c.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def start_to_ready(binary):
    port = free_port()
    started = time.monotonic()
    child = subprocess.Popen(
        [binary, "run", "--server", "--addr", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while not healthy(port):
            if child.poll() is not None:
                sys.exit(f"{binary} exited with {child.returncode} before it was ready")
            if time.monotonic() - started > 30:
                sys.exit(f"{binary} not ready after 30 s")
            time.sleep(0.0005)
        return (time.monotonic() - started) * 1000
    finally:
        child.terminate()
        child.wait()


def main():
    binary = sys.argv[1]
    starts = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    times = [start_to_ready(binary) for _ in range(starts)]
    print(
        f"start to ready ({starts} starts, spawn to the first 200 on /health): "
        f"median {statistics.median(times):.1f} ms, min {min(times):.1f}, max {max(times):.1f}"
    )


main()
