"""Running the app with uvicorn: in the foreground (``tuneloop serve``) or in a thread (tests, benchmarks)."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI

from tuneloop.errors import ConfigError


def is_loopback(host: str) -> bool:
    """True when every address ``host`` names is on this machine only (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or a ConfigError that says what to change."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host!r}: {exc.strerror or exc}; give an address of this machine "
                          "with --host") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == 98:
            raise ConfigError(f"port {port} on {host} is already in use; choose another with --port "
                              "(0 picks a free one)") from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def base_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/v1"


def uvicorn_server(app: FastAPI, log_level: str = "info", **options: Any) -> uvicorn.Server:
    config = uvicorn.Config(app, log_level=log_level, timeout_graceful_shutdown=5, lifespan="on", **options)
    return uvicorn.Server(config)


class ServerThread:
    """``with ServerThread(app) as server:`` serves ``app`` on 127.0.0.1 (a free port) at ``server.base_url``."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> None:
        self.app = app
        self.host = host
        self.port = port
        self.log_level = log_level
        self.base_url = ""

    def __enter__(self) -> ServerThread:
        sock = bind(self.host, self.port)
        self.base_url = base_url(sock)
        self.server = uvicorn_server(self.app, log_level=self.log_level)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True,
                                       name="tuneloop-server")
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the tuneloop server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
