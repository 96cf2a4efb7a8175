"""The viewer server answers only its own pages: loopback Host, same origin; it times out stalled clients, takes a
burst of connections, refuses a fractional layer and does not announce the Python version."""

from __future__ import annotations

import http.client
import json
import socket
import sys
import threading
import time

import pytest

from model_zoo import build_model


@pytest.fixture(scope="module")
def server(bpe_tokenizer):
    from needle.models import adapt
    from needle.scope import Viewer, make_server, serve_in_thread

    adapter = adapt(build_model("gpt_neox", len(bpe_tokenizer)), bpe_tokenizer, model_id="tiny")
    httpd = make_server(Viewer(adapter), port=0, socket_timeout=1.0)
    serve_in_thread(httpd)
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def ask(server, method="GET", path="/api/info", body=None, headers=None):
    """(status, headers, body) of one request with exactly these headers (http.client adds Host unless given)."""
    port = server.server_address[1]
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = dict(headers or {})
    connection.putrequest(method, path, skip_host="Host" in headers)
    data = json.dumps(body).encode() if body is not None else b""
    for key, value in {**headers, "Content-Length": str(len(data))}.items():
        connection.putheader(key, value)
    connection.endheaders(data)
    response = connection.getresponse()
    answer = response.status, dict(response.getheaders()), response.read()
    connection.close()
    return answer


ACTIVATIONS = {"text": "hello world", "layer": 1, "neuron": 3}


def test_loopback_hosts_are_answered(server):
    port = server.server_address[1]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST"):
        status, _, _ = ask(server, headers={"Host": host})
        assert status == 200, host


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "127.0.0.1.evil.example", "", "[::1"])
def test_other_hosts_are_refused_so_dns_rebinding_cannot_run_the_model(server, host):
    status, _, body = ask(server, "POST", "/api/activations", ACTIVATIONS, headers={"Host": host})
    assert status == 403 and "answers only requests to" in json.loads(body)["error"]


def test_cross_origin_requests_are_refused(server):
    port = server.server_address[1]
    own = {"Host": f"127.0.0.1:{port}"}
    status, _, body = ask(server, "POST", "/api/activations", ACTIVATIONS,
                          headers={**own, "Origin": f"http://127.0.0.1:{port}"})
    assert status == 200 and len(json.loads(body)["activations"]) > 0  # the viewer's own page
    for origin in ("https://evil.example", "null", f"http://127.0.0.1:{port + 1}", f"http://localhost.evil:{port}"):
        status, _, body = ask(server, "POST", "/api/activations", ACTIVATIONS, headers={**own, "Origin": origin})
        assert status == 403 and "another origin" in json.loads(body)["error"], origin
    # A cross-site <img src=…/api/activations?…> sends no Origin, but browsers mark it cross-site.
    status, _, _ = ask(server, "GET", "/api/activations?text=hi&layer=1&neuron=3",
                       headers={**own, "Sec-Fetch-Site": "cross-site"})
    assert status == 403
    assert ask(server, "GET", "/api/activations?text=hi&layer=1&neuron=3", headers={**own, "Sec-Fetch-Site":
                                                                                   "same-origin"})[0] == 200


def test_server_header_names_needle_not_python(server):
    _, headers, _ = ask(server)
    assert headers["Server"] == "needle-scope" and "Python" not in headers["Server"]
    assert sys.version.split()[0] not in headers["Server"]


@pytest.mark.parametrize("value", [1.5, "1.5", 0.999])
def test_a_fractional_layer_or_neuron_is_refused_not_truncated(server, value):
    for field in ("layer", "neuron"):
        status, _, body = ask(server, "POST", "/api/activations", {**ACTIVATIONS, field: value})
        assert status == 400 and "whole number" in json.loads(body)["error"], (field, value)
    status, _, body = ask(server, "POST", "/api/activations", {**ACTIVATIONS, "layer": 1.0, "neuron": "3"})
    assert status == 200 and json.loads(body)["layer"] == 1


def raw_exchange(server, data: bytes, wait: float = 10.0) -> tuple[bytes, float]:
    """Send raw bytes, read until the server closes; return (what came back, seconds until it closed)."""
    sock = socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=wait)
    started = time.monotonic()
    sock.sendall(data)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    finally:
        sock.close()
    return b"".join(chunks), time.monotonic() - started


def test_a_negative_content_length_is_a_400_not_a_hang(server):
    port = server.server_address[1]
    request = (f"POST /api/activations HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: -1\r\n"
               "Connection: close\r\n\r\n").encode()
    answer, _ = raw_exchange(server, request)
    assert answer.startswith(b"HTTP/1.0 400") and b"not a byte count" in answer


def test_a_stalled_client_is_dropped_after_the_socket_timeout(server):
    # Half a request line, then silence: the server (socket_timeout=1 s here) must hang up.
    answer, seconds = raw_exchange(server, b"GET /api/inf", wait=20)
    assert seconds < 10
    port = server.server_address[1]
    request = (f"POST /api/activations HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 100\r\n\r\n{{").encode()
    answer, seconds = raw_exchange(server, request, wait=20)  # promises 100 bytes, sends 1
    assert seconds < 10


def test_a_burst_of_64_clients_is_served(server):
    statuses, errors = [], []

    def one():
        try:
            statuses.append(ask(server)[0])
        except OSError as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=one) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors and statuses == [200] * 64
    assert server.request_queue_size >= 64
