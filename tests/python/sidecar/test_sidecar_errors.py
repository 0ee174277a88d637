"""Bad input gets JSON-RPC errors and the sidecar keeps running; stdout carries nothing but framed messages."""

from __future__ import annotations

import json
import subprocess

import pytest
from lsprotocol import types as lsp
from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams, JsonRpcMethodNotFound
from sidecar_session import SERVER, sidecar

from crashguard.sidecar import protocol as p


@pytest.mark.parametrize(("method", "params", "field"), [
    (p.STOP_RUN, {}, "run"),
    (p.STOP_RUN, {"run": 3}, "run"),
    (p.CLEANUP, {"timeoutMs": "soon"}, "timeoutMs"),
    (p.CLEANUP, {"runs": "all"}, "runs"),
    (p.PROCESS_DETAIL, {"pid": "self"}, "pid"),
    (p.PROCESS_DETAIL, {"pid": 2**22 + 12345}, "pid"),  # above pid_max: no such process
    (p.STATUS, [1, 2], "params"),
    (p.UPDATE_SETTINGS, {"settings": {"ramCriticalPercent": 50}}, "ramCriticalPercent"),  # below warning 80
    (p.UPDATE_SETTINGS, {"settings": {"sampleIntervalMs": "fast"}}, "sampleIntervalMs"),
    (p.UPDATE_SETTINGS, {"settings": {"nope": 1}}, "nope"),
])
async def test_malformed_params_and_bad_settings_get_invalid_params(method: str, params: object,
                                                                    field: str) -> None:
    async with sidecar({"sampleIntervalMs": 1000}) as s:
        with pytest.raises(JsonRpcInvalidParams) as info:
            await s.request(method, params)
        assert info.value.code == -32602
        assert info.value.data == {"field": field} and field in info.value.message
        # still serving, settings untouched
        current = await s.request(p.UPDATE_SETTINGS, {})
        assert current["settings"]["sampleIntervalMs"] == 1000 and current["settings"]["ramWarningPercent"] == 80
        assert (await s.request(p.STATUS, {}))["ram"]["total"] > 0


async def test_unknown_methods_and_rejected_configuration_keep_the_server_running() -> None:
    async with sidecar({"sampleIntervalMs": 300}) as s:
        with pytest.raises(JsonRpcMethodNotFound) as info:
            await s.request("crashGuard/doesNotExist", {})
        assert info.value.code == -32601
        s.client.protocol.notify("crashGuard/unknownNotification", {"x": 1})  # ignored, not fatal

        # didChangeConfiguration is a notification: a bad value is shown to the user, the old settings stay.
        s.client.workspace_did_change_configuration(
            lsp.DidChangeConfigurationParams(settings={"crashGuard": {"sampleIntervalMs": 5}}))
        await s.wait_samples(2)
        assert any("sampleIntervalMs" in m.message for m in s.shown), s.shown
        assert (await s.request(p.UPDATE_SETTINGS, {}))["settings"]["sampleIntervalMs"] == 300

        detail = await s.request(p.PROCESS_DETAIL, {"pid": s.pid})
        assert detail["pid"] == s.pid and detail["uss"] > 0 and detail["rss"] >= detail["uss"]
        await s.wait_samples(2)


async def test_bad_initialization_settings_are_rejected_by_initialize() -> None:
    from pytest_lsp.client import LanguageClient, register_lsp_features

    from crashguard.sidecar.server import plain_json_converter

    client = LanguageClient(converter_factory=plain_json_converter)
    register_lsp_features(client)
    await client.start_io(*SERVER)
    try:
        with pytest.raises(JsonRpcException) as info:
            await client.initialize_session(lsp.InitializeParams(
                capabilities=lsp.ClientCapabilities(),
                initialization_options={"settings": {"criticalAction": "killEverything"}}))
        assert info.value.code == -32602 and "criticalAction" in info.value.message
        # A corrected initialize succeeds on the same server.
        await client.initialize_session(lsp.InitializeParams(
            capabilities=lsp.ClientCapabilities(), initialization_options={"settings": {}}))
        assert (await client.protocol.send_request_async(p.STATUS, {}))["level"] in ("normal", "warning",
                                                                                   "critical")
        await client.shutdown_session()
    finally:
        await client.stop()


def _frame(message: dict) -> bytes:
    body = json.dumps(message).encode()
    return f"Content-Length: {len(body)}\r\n\r\n".encode() + body


def _parse_frames(data: bytes) -> list[dict]:
    """Strict LSP framing: every byte must belong to a header block or a body."""
    messages = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, f"stray bytes on stdout: {data[:200]!r}"
        headers = dict(line.split(": ", 1) for line in head.decode("ascii").split("\r\n"))
        length = int(headers["Content-Length"])
        messages.append(json.loads(rest[:length]))
        data = rest[length:]
    return messages


def _read_frame(stream) -> dict:
    headers = {}
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("ascii").partition(": ")
        assert value.endswith("\r\n"), f"stray bytes on stdout: {line!r}"
        headers[name] = value.strip()
    assert "Content-Length" in headers, f"not a header block: {headers}"
    return json.loads(stream.read(int(headers["Content-Length"])))


def test_stdout_carries_only_framed_protocol_even_after_garbage_input() -> None:
    server = subprocess.Popen(SERVER, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert server.stdin is not None and server.stdout is not None
    try:
        server.stdin.write(b"".join([
            _frame({"jsonrpc": "2.0", "id": 1, "method": "initialize",
                    "params": {"processId": None, "rootUri": None, "capabilities": {},
                               "initializationOptions": {"settings": {"sampleIntervalMs": 200}}}}),
            _frame({"jsonrpc": "2.0", "method": "initialized", "params": {}}),
            b"Content-Length: 9\r\n\r\n{not json",  # malformed body
            _frame({"jsonrpc": "2.0", "id": 2, "method": p.STATUS, "params": {}}),
            _frame({"jsonrpc": "2.0", "id": 3, "method": p.STOP_RUN, "params": {"run": None}}),
        ]))
        server.stdin.flush()
        seen: dict[object, dict] = {}
        methods: list[str] = []
        while not {1, 2, 3} <= set(seen):
            message = _read_frame(server.stdout)
            if "id" in message:
                seen[message["id"]] = message
            else:
                methods.append(message["method"])
        assert "capabilities" in seen[1]["result"]
        assert seen[2]["result"]["ram"]["total"] > 0  # still serving after the garbage
        assert seen[3]["error"]["code"] == -32602
        server.stdin.write(_frame({"jsonrpc": "2.0", "id": 4, "method": "shutdown", "params": None}) +
                           _frame({"jsonrpc": "2.0", "method": "exit", "params": None}))
        server.stdin.close()
        rest = server.stdout.read()
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    tail = _parse_frames(rest)
    assert any(m.get("id") == 4 and m["result"] is None for m in tail)
    # pygls tells the user about the unparsable message with window/showMessage.
    assert set(methods) <= {p.SAMPLE, "window/logMessage", "window/showMessage"}
