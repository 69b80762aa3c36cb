"""OAuth 1.0a signing against a published example (Twitter's "Creating a signature")."""

from __future__ import annotations

from freshtoken.connect import oauth1

URL = "https://api.twitter.com/1.1/statuses/update.json?include_entities=true"
PARAMS = [
    ("status", "Hello Ladies + Gentlemen, a signed OAuth request!"),
    ("oauth_consumer_key", "xvz1evFS4wEEPTGEFPHBog"),
    ("oauth_nonce", "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg"),
    ("oauth_signature_method", "HMAC-SHA1"),
    ("oauth_timestamp", "1318622958"),
    ("oauth_token", "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb"),
    ("oauth_version", "1.0"),
]


def test_signature_matches_the_published_example() -> None:
    """Base string and HMAC-SHA1 signature equal the documented ones."""
    base = oauth1.base_string("POST", URL, PARAMS)
    assert base.startswith(
        "POST&https%3A%2F%2Fapi.twitter.com%2F1.1%2Fstatuses%2Fupdate.json&include_entities%3Dtrue"
        "%26oauth_consumer_key%3Dxvz1evFS4wEEPTGEFPHBog"
    )
    assert "status%3DHello%2520Ladies%2520%252B%2520Gentlemen" in base
    sig = oauth1.signature(
        base,
        "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
        "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE",
    )
    assert sig == "hCtSmYh+iHYCEqBWrE7C7hYmtUk="


def test_header_round_trips() -> None:
    """The header parses back to the parameters it signed."""
    header = oauth1.authorization_header(
        "POST",
        "https://p.example/req",
        consumer_key="ck",
        consumer_secret="cs",
        extra={"oauth_callback": "http://127.0.0.1/cb?state=a b"},
        nonce="n",
        timestamp="1",
    )
    parsed = oauth1.parse_header(header)
    assert parsed["oauth_callback"] == "http://127.0.0.1/cb?state=a b"
    assert parsed["oauth_consumer_key"] == "ck" and parsed["oauth_signature"]
