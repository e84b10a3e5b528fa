"""Malformed HTTP/REST requests against Triton's v2 inference endpoint, sent
over a raw socket (no client library would send them): bad JSON, a body that
lies about its length, binary-data headers with wrong sizes. The server must
stay up and answer each promptly: with a 4xx, or by closing the connection
where there is no request to answer (a body that never arrives, a length that
is not a number).

Known upstream deviation: Triton's HTTP frontend reports a JSON parse error
as HTTP 500, not 400 (triton-inference-server/server issue #8762, fix
proposed in PR #8773). Those answers are classed "500 (upstream #8762)" and
counted apart; every other 5xx fails.
"""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass

from genre_serve.formats import repository as fmt
from genre_serve.serving.launcher import http_ready

PATH = f"/v2/models/{fmt.RECOMMEND}/infer"


@dataclass(frozen=True)
class RawCase:
    name: str
    request: bytes  # the whole request as sent
    half_close: bool = True  # shut the write side after sending (a client that sends no more)


@dataclass(frozen=True)
class RawResult:
    name: str
    status: int | None  # None: no HTTP answer (the server closed the connection)
    detail: str
    verdict: str  # "4xx", "closed", "500 (upstream #8762)" or "FAIL"
    server_up_after: bool

    @property
    def passed(self) -> bool:
        return self.verdict != "FAIL" and self.server_up_after


def _request(body: bytes, headers: dict[str, str], host: str, path: str = PATH) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _binary_request(host: str, declared_sizes: tuple[int, int], sent: bytes, header_length_delta: int = 0) -> bytes:
    """A binary-data request: JSON header declaring HISTORY/K sizes, then raw bytes."""
    header = json.dumps({"inputs": [
        {"name": "HISTORY", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": declared_sizes[0]}},
        {"name": "K", "shape": [1], "datatype": "INT32", "parameters": {"binary_data_size": declared_sizes[1]}},
    ]}).encode()
    body = header + sent
    return _request(body, {"Content-Type": "application/octet-stream", "Content-Length": str(len(body)),
                           "Inference-Header-Content-Length": str(len(header) + header_length_delta)}, host)


def cases(host: str) -> list[RawCase]:
    good_json = json.dumps({"inputs": [
        {"name": "HISTORY", "shape": [1], "datatype": "BYTES", "data": ["x"]},
        {"name": "K", "shape": [1], "datatype": "INT32", "data": [3]},
    ]}).encode()
    wrong_shape = json.dumps({"inputs": [
        {"name": "HISTORY", "shape": [4], "datatype": "BYTES", "data": ["x"]},  # 4 declared, 1 sent
        {"name": "K", "shape": [1], "datatype": "INT32", "data": [3]},
    ]}).encode()
    history = (1).to_bytes(4, "little") + b"x"  # one BYTES element: 4-byte length + the bytes
    k = (3).to_bytes(4, "little", signed=True)
    json_type = {"Content-Type": "application/json"}
    return [
        RawCase("malformed JSON", _request(b'{"inputs": [ {"name": "HISTORY", ', json_type | {"Content-Length": "32"},
                                           host)),
        RawCase("JSON of the wrong structure", _request(b'{"inputs": 5}', json_type | {"Content-Length": "13"}, host)),
        RawCase("JSON data that disagrees with its shape",
                _request(wrong_shape, json_type | {"Content-Length": str(len(wrong_shape))}, host)),
        RawCase("Content-Length shorter than the body",
                _request(good_json, json_type | {"Content-Length": str(len(good_json) // 2)}, host)),
        RawCase("Content-Length longer than the body (then no more bytes)",
                _request(good_json, json_type | {"Content-Length": str(len(good_json) + 1000)}, host)),
        RawCase("Content-Length not a number", _request(good_json, json_type | {"Content-Length": "many"}, host)),
        RawCase("Content-Length of 10^15 and no body",
                _request(b"", json_type | {"Content-Length": str(10**15)}, host)),
        RawCase("binary_data_size larger than the data sent", _binary_request(host, (len(history) + 50, 4),
                                                                             history + k)),
        RawCase("binary_data_size smaller than the data sent", _binary_request(host, (len(history), 2),
                                                                              history + k)),
        RawCase("BYTES element length prefix beyond the data", _binary_request(
            host, (len(history), 4), (1000).to_bytes(4, "little") + b"x" + k)),
        RawCase("Inference-Header-Content-Length beyond the body", _binary_request(
            host, (len(history), 4), history + k, header_length_delta=10_000)),
        RawCase("Inference-Header-Content-Length negative", _binary_request(
            host, (len(history), 4), history + k, header_length_delta=-10**6)),
        RawCase("unknown model", _request(good_json, json_type | {"Content-Length": str(len(good_json))}, host,
                                          path="/v2/models/no_such_model/infer")),
    ]


def send_raw(address: tuple[str, int], case: RawCase, timeout_s: float = 10.0) -> tuple[int | None, str]:
    with socket.create_connection(address, timeout=timeout_s) as s:
        s.sendall(case.request)
        if case.half_close:
            s.shutdown(socket.SHUT_WR)
        data = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            return None, f"no answer within {timeout_s:.0f} s"
        except ConnectionResetError:
            return None, "connection reset by the server" + (" after a partial answer" if data else "")
    if not data:
        return None, "connection closed without an answer"
    status_line = data.split(b"\r\n", 1)[0].decode(errors="replace")
    body = data.split(b"\r\n\r\n", 1)[-1][:160].decode(errors="replace")
    try:
        return int(status_line.split()[1]), body
    except (IndexError, ValueError):
        return None, f"not an HTTP answer: {status_line[:80]!r}"


def verdict_of(status: int | None, detail: str) -> str:
    if status is not None and 400 <= status < 500:
        return "4xx"
    if status is None and detail.startswith(("connection closed", "connection reset")):
        return "closed"
    if status == 500 and ("failed to parse the request json" in detail.lower()
                          or "unable to parse" in detail.lower()):
        return "500 (upstream #8762)"
    return "FAIL"


def run_case(case: RawCase, http_url: str) -> RawResult:
    host, port = http_url.rsplit(":", 1)
    status, detail = send_raw((host, int(port)), case)
    return RawResult(case.name, status, detail.replace("\r", " ").replace("\n", " "), verdict_of(status, detail),
                     http_ready(http_url, timeout_s=5))
