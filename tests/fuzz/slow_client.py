#!/usr/bin/env python3
"""slow_client.py: checks that archevald drops slow clients (slowloris).

Starts archevald (AE_BUILDDIR/server/archevald, or argv[1]) with
--connection-timeout-secs=2 and opens three connections: one idle, one
sending a header line every 1.5 s, one sending a declared 1000-byte body a
byte every 1.5 s.  Each must be closed within 3 x the timeout (6 s); a
connection that stays open while trickling bytes lets a few clients hold
every connection slot.  Not registered in TESTS (a manual check written
for finding F2 of tests/fuzz/FINDINGS.md); prints `N passed, M failed`,
exits 77 when the daemon is not built.  Single process, one server.
"""
import os
import socket
import subprocess
import sys
import time

TIMEOUT = 2
LIMIT = 3 * TIMEOUT


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def trickle(port, head, chunk):
    """Sends head, then chunk every 1.5 s; seconds until closed, or None."""
    s = socket.create_connection(('127.0.0.1', port))
    s.settimeout(0.1)
    start = time.time()
    try:
        if head:
            s.sendall(head)
        while time.time() - start < LIMIT + 4:
            time.sleep(1.5)
            try:
                if chunk:
                    s.sendall(chunk)
                if s.recv(4096) == b'':
                    return time.time() - start
            except socket.timeout:
                pass
            except OSError:
                return time.time() - start
        return None
    finally:
        s.close()


def main():
    builddir = os.environ.get('AE_BUILDDIR', '.')
    exe = sys.argv[1] if len(sys.argv) > 1 else \
        os.path.join(builddir, 'server', 'archevald')
    if not os.access(exe, os.X_OK):
        print('archevald not built: skipped')
        print('0 passed, 0 failed')
        return 77
    port = free_port()
    srv = subprocess.Popen(
        [exe, '--http-port=%d' % port, '--no-store', '--host-workers=1',
         '--connection-timeout-secs=%d' % TIMEOUT, '--log-level=error'],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    passed = failed = 0
    try:
        for _ in range(100):
            try:
                socket.create_connection(('127.0.0.1', port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        cases = [
            ('idle client', None, None),
            ('slow headers', b'GET /v1/health/live HTTP/1.1\r\nHost: x\r\n',
             b'X-Slow: 1\r\n'),
            ('slow body', b'POST /v1/jobs HTTP/1.1\r\nHost: x\r\n'
             b'Content-Type: application/json\r\nContent-Length: 1000\r\n'
             b'\r\n', b' '),
        ]
        for name, head, chunk in cases:
            closed = trickle(port, head, chunk)
            if closed is not None and closed <= LIMIT + 1:
                print('PASS %s: closed after %.1f s' % (name, closed))
                passed += 1
            else:
                print('FAIL %s: %s' % (name, 'still open after %d s' %
                                        (LIMIT + 4) if closed is None else
                                        'closed only after %.1f s' % closed))
                failed += 1
    finally:
        srv.terminate()
        srv.wait()
    print('%d passed, %d failed' % (passed, failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
