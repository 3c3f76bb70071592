import secrets

import pytest
from pydantic import ValidationError

from shared.crypto import ContactCipher, ContactDecryptError, generate_key, mask_email, mask_phone
from shared.kafka.retry_topics import RetryTopicPolicy
from shared.settings import KafkaSettings, ServiceSettings
from tests.kafkautil import PRODUCTION_KAFKA

INDEX_KEY = "x" * 32


def test_encrypts_and_rotates_keys() -> None:
    old_key, new_key = generate_key(), generate_key()
    old = ContactCipher(old_key, INDEX_KEY)
    ciphertext = old.encrypt("+15551234567")
    assert "5551234567" not in ciphertext
    rotated = ContactCipher(f"{new_key},{old_key}", INDEX_KEY)
    assert rotated.decrypt(ciphertext) == "+15551234567"
    fresh = rotated.rotate(ciphertext)
    assert ContactCipher(new_key, INDEX_KEY).decrypt(fresh) == "+15551234567"
    with pytest.raises(ContactDecryptError):
        ContactCipher(new_key, INDEX_KEY).decrypt(ciphertext)


def test_blind_index_is_stable_and_keyed() -> None:
    key = generate_key()
    one = ContactCipher(key, INDEX_KEY)
    assert one.blind_index("+15551234567") == one.blind_index("+15551234567")
    assert one.blind_index("+15551234567") != ContactCipher(key, "y" * 32).blind_index("+15551234567")


def test_masks_show_little() -> None:
    assert mask_phone("+15551234567") == "+1••••••••67"
    assert "5551234" not in mask_phone("+15551234567")
    assert mask_email("jane.doe@example.org") == "j•••@e•••.org"


def test_bad_keys_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="invalid contact encryption key"):
        ContactCipher("not-a-key", INDEX_KEY)
    with pytest.raises(ValueError, match="blind index key"):
        ContactCipher(generate_key(), "short")


def test_settings_validate_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://nope")
    with pytest.raises(ValidationError, match="postgresql://"):
        ServiceSettings()
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    monkeypatch.setenv("KAFKA__BOOTSTRAP_SERVERS", "k:9092")
    settings = ServiceSettings()
    assert settings.kafka.bootstrap_servers == "k:9092"


def test_kafka_settings_make_safe_clients() -> None:
    settings = KafkaSettings(bootstrap_servers="k:1", topic_prefix="p.")
    producer = settings.producer_kwargs()
    assert producer["acks"] == "all"
    assert producer["enable_idempotence"] is True
    consumer = settings.consumer_kwargs("g")
    assert consumer["enable_auto_commit"] is False
    assert consumer["isolation_level"] == "read_committed"
    assert settings.topic("a.v1") == "p.a.v1"


def test_retry_backoff_grows_and_is_bounded() -> None:
    policy = RetryTopicPolicy(base_delay=1, max_delay=10)
    assert 0.5 <= policy.delay(1) <= 1
    assert 4 <= policy.delay(4) <= 8
    assert policy.delay(30) <= 10


def test_twilio_signature_matches_the_documented_example() -> None:
    from shared.twilio import signature_is_valid, twilio_signature

    # The worked example from Twilio's security documentation.
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    assert twilio_signature("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert signature_is_valid("12345", url, params, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    assert not signature_is_valid("12345", url, {**params, "Digits": "9999"}, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=")
    assert not signature_is_valid("12345", url, params, None)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("CHANGE-ME", "placeholder"),
        ("CHANGE-ME-at-least-32-characters-long", "placeholder"),
        ("changemechangemechangeme", "placeholder"),
        ("https://example.org/not-a-secret-at-all", "placeholder"),
        ("Zq8-short", "too short"),
        ("a" * 37, "too little entropy"),
        ("abababababababababababababababab", "too little entropy"),
    ],
)
def test_production_refuses_placeholder_secrets_by_name(value: str, reason: str) -> None:
    from services.subscription.settings import SubscriptionSettings

    with pytest.raises(ValidationError, match=f"SUBSCRIPTION_TWILIO_AUTH_TOKEN [^;]*{reason}"):
        SubscriptionSettings(environment="production", twilio_auth_token=value)


def test_production_accepts_generated_secrets_and_development_accepts_anything() -> None:
    from services.ingest.settings import IngestSettings

    generated = secrets.token_urlsafe(24)
    production = IngestSettings(environment="production", admin_token=generated, kafka=PRODUCTION_KAFKA)
    assert production.admin_token == generated
    assert IngestSettings(environment="development", admin_token="CHANGE-ME-but-only-locally").environment


def test_production_refuses_a_placeholder_database_password() -> None:
    from services.ingest.settings import IngestSettings

    with pytest.raises(ValidationError, match="INGEST_DATABASE_URL has a placeholder password"):
        IngestSettings(
            environment="production",
            admin_token=secrets.token_urlsafe(24),
            kafka=PRODUCTION_KAFKA,
            database_url="postgresql://ingest:CHANGE-ME@postgres:5432/ingest",
        )


def test_kafka_identity_settings_become_client_arguments() -> None:
    with pytest.raises(ValidationError, match="needs sasl_username and sasl_password"):
        KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_username="ingest")
    sasl = KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_username="ingest", sasl_password="p" * 20)
    identity = {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "ingest",
        "sasl_plain_password": "p" * 20,
    }
    assert identity.items() <= sasl.producer_kwargs().items()
    assert identity.items() <= sasl.consumer_kwargs("g").items()
    assert KafkaSettings().common_kwargs()["security_protocol"] == "PLAINTEXT"
    assert "ssl_context" in PRODUCTION_KAFKA.common_kwargs()


def test_production_refuses_kafka_without_identity_or_with_a_placeholder_password() -> None:
    from services.ingest.settings import IngestSettings

    token = secrets.token_urlsafe(24)
    with pytest.raises(ValidationError, match="INGEST_KAFKA__SECURITY_PROTOCOL is PLAINTEXT"):
        IngestSettings(environment="production", admin_token=token)
    placeholder = PRODUCTION_KAFKA.model_copy(update={"sasl_password": "CHANGE-ME-kafka-password"})
    with pytest.raises(ValidationError, match="INGEST_KAFKA__SASL_PASSWORD looks like a placeholder"):
        IngestSettings(environment="production", admin_token=token, kafka=placeholder)
