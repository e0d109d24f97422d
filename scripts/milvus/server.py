"""Run the embedded Milvus standalone from the PyPI `milvus` package in the
foreground until SIGTERM/SIGINT, for scripts/milvus.sh.

Usage: server.py BASE_DIR PORT READY_FILE

The package's own CLI stops Milvus on SIGINT only and gives it one second
before SIGKILL; this wrapper handles SIGTERM too and allows a graceful stop,
so the shell script can stop it by PID. READY_FILE is written (with the
proxy port) once Milvus reports healthy, and removed on exit.
"""

import os
import signal
import subprocess
import sys
import time

from milvus import MilvusServer, MilvusServerConfig

GRACE_SECONDS = 15


def main() -> int:
    base_dir, port, ready_file = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    server = MilvusServer(MilvusServerConfig(), wait_for_started=False)
    server.set_base_dir(base_dir)
    server.listen_port = port
    for key, val in EXTRA_CONFIG.items():
        server.config.set(key, val)

    stopping = False

    def stop(_sig, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    server.start()
    try:
        server.wait_started(timeout=180_000)
        with open(ready_file + ".tmp", "w", encoding="utf-8") as f:
            f.write(f"{server.listen_port}\n")
        os.replace(ready_file + ".tmp", ready_file)
        while not stopping and server.server_proc.poll() is None:
            time.sleep(0.2)
    finally:
        proc = server.server_proc
        code = proc.poll()
        if code is None:
            proc.terminate()
            try:
                code = proc.wait(timeout=GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
        server.server_proc = None
        server.stop()  # closes the log files
        try:
            os.remove(ready_file)
        except FileNotFoundError:
            pass
    return 0 if stopping else (code or 1)


# Every component registers itself under this address instead of the
# machine's first unicast address (Milvus 2.3 still listens on all
# interfaces; it has no listen-address setting).
EXTRA_CONFIG = {
    f"{component}.ip": "127.0.0.1"
    for component in (
        "rootCoord", "proxy", "queryCoord", "queryNode",
        "indexNode", "dataCoord", "dataNode",
    )
}
# Strong-consistency reads wait for the next time tick; 200 ms by default
# made each test search take ~240 ms. A test server can tick faster.
EXTRA_CONFIG["proxy.timeTickInterval"] = 50
# Growing segments otherwise get an approximate interim IVF index; the
# store asks for FLAT (exact) search, and tests assert exact rankings.
EXTRA_CONFIG["queryNode.segcore.interimIndex.enableIndex"] = "false"

if __name__ == "__main__":
    sys.exit(main())
