"""popplast asks a tracking server whether it answers as MLflow's own client asks it: with MLflow's token and
TLS settings (issue 31: behind an auth proxy, or with a certificate MLflow trusts, the probe refused a server
MLflow itself could use). Real HTTP and HTTPS servers on 127.0.0.1 stand in for the proxy."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import ssl
import threading

import pytest

from popplast.errors import SpecError
from popplast.tracking.search_run import check_server

TOKEN = "s3cret"


class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        ok = self.path == "/health" and self.headers.get("Authorization") == f"Bearer {TOKEN}"
        self.send_response(200 if ok else 401)
        self.end_headers()
        self.wfile.write(b"OK" if ok else b"unauthorized")

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """An HTTPS server with a self-signed certificate that wants a bearer token: its URL and certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    httpd = http.server.HTTPServer(("127.0.0.1", 0), Health)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}", str(cert_path)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_server_mlflow_trusts_with_mlflows_credentials_answers(server, monkeypatch):
    url, cert = server
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", cert)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", TOKEN)
    check_server(url)


def test_without_mlflows_credentials_or_trust_it_is_one_clear_line(server, monkeypatch):
    url, cert = server
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_SERVER_CERT_PATH", raising=False)
    with pytest.raises(SpecError, match="MLFLOW_TRACKING_SERVER_CERT_PATH") as e:
        check_server(url)  # a certificate nobody told MLflow to trust
    assert "SSLCertVerificationError" in str(e.value) and "\n" not in str(e.value)
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", cert)
    with pytest.raises(SpecError, match="refused this client's credentials \\(HTTP 401\\)"):
        check_server(url)
    monkeypatch.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_SERVER_CERT_PATH")
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", TOKEN)
    check_server(url)  # MLflow's own switch for a certificate it does not check
