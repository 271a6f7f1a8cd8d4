import base64
import ipaddress

from pydantic import SecretStr

from ingress import auth

NETS = [ipaddress.ip_network("10.0.0.0/8")]


def test_untrusted_client_cannot_spoof_forwarded_for():
    address = auth.client_address("203.0.113.9", "10.1.1.1", trusted_proxies=[])
    assert str(address) == "203.0.113.9"
    assert not auth.address_allowed(address, NETS)


def test_trusted_proxy_forwarded_for_is_believed():
    proxies = [ipaddress.ip_network("192.0.2.0/24")]
    address = auth.client_address("192.0.2.10", "198.51.100.1, 10.2.3.4", proxies)
    assert str(address) == "10.2.3.4"
    assert auth.address_allowed(address, NETS)


def test_secret_from_bearer_basic_or_query():
    basic = "Basic " + base64.b64encode(b"spakinect:s3cret").decode()
    assert auth.presented_secret("Bearer s3cret", None) == "s3cret"
    assert auth.presented_secret(basic, None) == "s3cret"
    assert auth.presented_secret(None, "s3cret") == "s3cret"
    assert auth.presented_secret("Basic !!!", None) is None


def test_secret_compare():
    assert auth.secret_matches("s3cret", SecretStr("s3cret"))
    assert not auth.secret_matches("s3cre", SecretStr("s3cret"))
    assert not auth.secret_matches(None, SecretStr("s3cret"))


def test_hmac_signature_with_rotation_and_tolerance():
    body = b'{"event": "x"}'
    old, new = "whsec_" + base64.b64encode(b"old-key").decode(), "plain-new-key"
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": "1000",
        "webhook-signature": "v1,bogus " + auth.sign(old, "msg_1", 1000, body),
    }
    secrets = [SecretStr(new), SecretStr(old)]
    assert auth.verify_signature(headers, body, secrets, 300, now_s=1100) is None
    assert auth.verify_signature(headers, body + b" ", secrets, 300, now_s=1100) == (
        "no signature matches"
    )
    assert auth.verify_signature(headers, body, secrets, 300, now_s=2000) == (
        "webhook-timestamp is outside the tolerance"
    )
    assert auth.verify_signature({}, body, secrets, 300, now_s=1000) == (
        "missing webhook-id, webhook-timestamp or webhook-signature header"
    )
