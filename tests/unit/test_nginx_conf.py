"""scripts/nginx_conf.py: the console's WebSocket path goes to the console proxy, upgraded; nginx accepts the file."""

import argparse
import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("nginx_conf", ROOT / "scripts" / "nginx_conf.py")
assert spec and spec.loader
nginx_conf = importlib.util.module_from_spec(spec)
spec.loader.exec_module(nginx_conf)


def render(tmp_path: Path, **overrides: str) -> str:
    values = {
        "var_dir": str(tmp_path),
        "listen": "127.0.0.1:18000",
        "web": f"unix:{tmp_path}/run/gunicorn.sock",
        "ws": f"unix:{tmp_path}/run/daphne.sock",
        "console": f"unix:{tmp_path}/run/console.sock",
        "static_root": None,
        "user": None,
        "client_max_body_size": "25m",
        "error_log": None,
        "access_log": None,
        "real_ip_from": [],
        **overrides,
    }
    return str(nginx_conf.render(argparse.Namespace(**values)))


def location(text: str, path: str) -> str:
    start = text.index(f"location = {path} {{")
    return text[start : text.index("}", start)]


def test_the_console_path_is_the_one_the_app_hands_out():
    assert nginx_conf.CONSOLE_PATH == settings.KVMWEB_CONSOLE_PATH


def test_the_console_path_goes_to_the_console_proxy_as_a_websocket(tmp_path):  # type: ignore[no-untyped-def]
    text = render(tmp_path, console="console:6080")
    assert "upstream kvmweb_console {\n        server console:6080;" in text
    block = location(text, "/console/websockify")
    for line in (
        "proxy_pass http://kvmweb_console;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_http_version 1.1;",
    ):
        assert line in block
    # Its access log leaves out the query string, where the token is.
    assert "kvmweb_console;" in block.split("\n")[1]
    assert '"$request_method $uri"' in text


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
def test_nginx_accepts_the_rendered_file(tmp_path):  # type: ignore[no-untyped-def]
    conf = tmp_path / "run" / "nginx.conf"
    conf.write_text(render(tmp_path))
    result = subprocess.run(
        ["nginx", "-t", "-q", "-c", str(conf), "-e", str(tmp_path / "error.log")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_a_volume_upload_streams_through_unbuffered(tmp_path):  # type: ignore[no-untyped-def]
    text = render(tmp_path)
    start = text.index("location ~ ^/api/v1/pools/[0-9]+/upload/$ {")
    block = text[start : text.index("}", start)]
    assert "proxy_pass http://kvmweb_web;" in block
    assert "proxy_request_buffering off;" in block
    assert "proxy_read_timeout 1h;" in block
