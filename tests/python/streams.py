"""The Python `kubernetes` client's streams against a lab, as a program
written for a real cluster would use them. Run by tests/labs with
KUBECONFIG set:

    streams.py exec POD          cat through exec with stdin (the client
                                 sends stdin in WebSocket text frames,
                                 where kubectl sends binary ones)
    streams.py attach POD        attach with stdin to a pod whose shell
                                 echoes each line it reads as got:LINE
    streams.py port-forward POD  GET /big.sha from the pod's port 80 over
                                 the client's port-forward (WebSocket
                                 channels) and print the hash

Prints one line and exits non-zero on a surprise."""

import sys
import time

from kubernetes import client, config
from kubernetes.stream import portforward, stream

config.load_kube_config()
core = client.CoreV1Api()
mode, pod = sys.argv[1], sys.argv[2]


def first_line(session, text):
    """Writes `text` to the session's stdin and returns what its stdout
    says up to the first newline (within 30 s)."""
    session.write_stdin(text)
    said = ""
    deadline = time.monotonic() + 30
    while session.is_open() and "\n" not in said and time.monotonic() < deadline:
        session.update(timeout=1)
        said += session.read_stdout()
    session.close()
    return said


if mode == "exec":
    session = stream(core.connect_get_namespaced_pod_exec, pod, "default", command=["cat"],
                     stdin=True, stdout=True, stderr=True, tty=False, _preload_content=False)
    echoed = first_line(session, "through text frames\n")
    assert echoed == "through text frames\n", f"cat echoed {echoed!r} within 30 s"
    print("exec stdin:", echoed, end="")
elif mode == "attach":
    session = stream(core.connect_get_namespaced_pod_attach, pod, "default",
                     stdin=True, stdout=True, stderr=True, tty=False, _preload_content=False)
    echoed = first_line(session, "through attach\n")
    assert echoed == "got:through attach\n", f"the pod echoed {echoed!r} within 30 s"
    print("attach stdin:", echoed, end="")
elif mode == "port-forward":
    forwarded = portforward(core.connect_get_namespaced_pod_portforward, pod, "default", ports="80")
    connection = forwarded.socket(80)
    connection.settimeout(30)
    connection.sendall(b"GET /big.sha HTTP/1.0\r\nHost: localhost\r\n\r\n")
    answer = b""
    while True:
        chunk = connection.recv(65536)
        if not chunk:
            break
        answer += chunk
    connection.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0], f"answer {answer[:200]!r}"
    error = forwarded.error(80)
    assert error is None, f"the error channel said {error!r}"
    print("port-forward:", body.split()[0].decode())
else:
    sys.exit(f"unknown mode {mode!r}")
