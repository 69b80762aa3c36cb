"""One mock-provider CLI: ``python -m freshtoken.mockprovider`` is ``freshtoken mock-provider``."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys

import httpx

from freshtoken.mockprovider import main as module_main


def test_module_alias_has_the_click_commands_options_and_defaults() -> None:
    """Both spellings print the same help (options and defaults, port 8089), bar the usage line."""
    # Both in fresh processes: click's help output must not depend on what other tests did to
    # the in-process command objects.
    outputs = [
        subprocess.run(
            [sys.executable, "-m", *argv, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        for argv in (["freshtoken.cli", "mock-provider"], ["freshtoken.mockprovider"])
    ]
    via_cli, via_module = outputs
    assert "8089" in via_cli
    assert via_module.splitlines()[1:] == via_cli.splitlines()[1:]


def test_module_alias_returns_click_usage_errors_as_exit_status() -> None:
    """An unknown option is a usage error (status 2), returned rather than raised."""
    assert module_main(["--no-such-option"]) == 2


def test_module_alias_serves_on_the_given_port() -> None:
    """``python -m freshtoken.mockprovider --port N`` answers /health and stops on SIGTERM."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "freshtoken.mockprovider", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith(f"mock provider listening on http://127.0.0.1:{port}")
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5.0).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
