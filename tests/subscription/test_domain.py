"""Unit tests of the pure subscription logic (no servers)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest
from defusedxml import ElementTree
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.subscription.domain import sms
from services.subscription.domain.contacts import normalise_email, normalise_phone
from services.subscription.domain.errors import (
    ConflictError,
    GoneError,
    InvalidContactError,
    InvalidRequestError,
    NotFoundError,
    SubscriptionError,
    TooManyRequestsError,
)
from services.subscription.domain.ratelimit import retry_after, window_start
from services.subscription.domain.subscription import (
    ALL_EVENT_TYPES,
    Contact,
    Subscription,
    add_contact,
    cancel,
    change_preferences,
    code_channel,
    disable_contact,
    mark_verified,
    normalise_event_types,
    resume_phone,
    stop_phone,
    unsubscribe,
    validate_timezone,
    verified_through_sms,
)
from services.subscription.domain.tokens import ExpiredTokenError, InvalidTokenError, Tokens
from services.subscription.domain.verification import (
    Challenge,
    CodeCheck,
    check_code,
    clean_code,
    generate_code,
    hash_code,
    problem_for,
    resend_wait,
    verification_notification_id,
)
from services.subscription.rendering import default_renderer
from services.subscription.settings import SubscriptionSettings
from shared.crypto import generate_key
from shared.events import SubjectIdentifier
from shared.vocabulary import Channel, CustodyStatus, IdentifierKind, Language
from tests.kafkautil import PRODUCTION_KAFKA

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
KEY = "k" * 40


# --- contacts ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed", ["+14155552671", "(415) 555-2671", "415.555.2671", "1 415 555 2671", " 415-555-2671 ", "+1 415 555 2671"]
)
def test_phone_numbers_are_normalised_to_e164(typed: str) -> None:
    assert normalise_phone(typed, "US") == "+14155552671"


def test_phone_default_region_applies_only_without_country_code() -> None:
    assert normalise_phone("+34 612 345 678", "US") == "+34612345678"
    assert normalise_phone("612 345 678", "ES") == "+34612345678"


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("+44 20 7946 0018", "cannot receive text messages"),
        ("+1 800 555 1234", "cannot receive text messages"),
        ("+1 555 123 4567", "not valid"),
        ("12", "not valid"),
        ("call me maybe", "not a phone number"),
        ("", "enter a mobile phone number"),
        ("1" * 41, "enter a mobile phone number"),
    ],
)
def test_unusable_phone_numbers_are_refused_clearly(typed: str, message: str) -> None:
    with pytest.raises(InvalidContactError, match=message):
        normalise_phone(typed, "US")


@given(st.text(max_size=60))
def test_any_phone_input_is_accepted_or_refused_never_crashes(typed: str) -> None:
    try:
        result = normalise_phone(typed, "US")
    except InvalidContactError:
        return
    assert result.startswith("+")
    assert result[1:].isdigit()


def test_emails_are_validated_and_normalised() -> None:
    assert normalise_email(" Jane.Doe@Example.ORG ") == "Jane.Doe@example.org"
    for bad in ("", "jane", "jane@", "@example.org", "jane@@example.org", "jane@example", "a" * 300 + "@x.org"):
        with pytest.raises(InvalidContactError):
            normalise_email(bad)


# --- verification codes -----------------------------------------------------------------------------------------


def challenge(**changes: object) -> Challenge:
    values: dict[str, object] = {
        "issue": 1,
        "code_hash": hash_code(KEY, "sub-1", Channel.SMS, 1, "123456"),
        "created_at": NOW,
        "expires_at": NOW + timedelta(minutes=10),
        "attempts": 0,
        "consumed_at": None,
    }
    values.update(changes)
    return Challenge(**values)


def test_codes_are_six_random_digits() -> None:
    codes = {generate_code() for _ in range(200)}
    assert all(len(code) == 6 and code.isdigit() for code in codes)
    assert len(codes) > 190


def test_code_hash_is_keyed_and_bound_to_its_issue() -> None:
    base = hash_code(KEY, "sub-1", Channel.SMS, 1, "123456")
    assert "123456" not in base
    assert base != hash_code("other" * 8, "sub-1", Channel.SMS, 1, "123456")
    assert base != hash_code(KEY, "sub-1", Channel.SMS, 2, "123456")
    assert base != hash_code(KEY, "sub-1", Channel.EMAIL, 1, "123456")
    assert base != hash_code(KEY, "sub-2", Channel.SMS, 1, "123456")


def attempt(code: str, issue: int = 1) -> str:
    return hash_code(KEY, "sub-1", Channel.SMS, issue, code)


def test_check_code_outcomes() -> None:
    assert check_code(challenge(), attempt("123456"), NOW, 5) is CodeCheck.VERIFIED
    assert check_code(challenge(), attempt("654321"), NOW, 5) is CodeCheck.WRONG
    assert check_code(challenge(attempts=4), attempt("123456"), NOW, 5) is CodeCheck.VERIFIED
    assert check_code(challenge(attempts=5), attempt("123456"), NOW, 5) is CodeCheck.EXHAUSTED
    assert check_code(challenge(), attempt("123456"), NOW + timedelta(minutes=10), 5) is CodeCheck.EXPIRED
    assert check_code(challenge(consumed_at=NOW), attempt("123456"), NOW, 5) is CodeCheck.USED


def test_every_code_cannot_be_tried_within_the_limit() -> None:
    """Walk the whole code space against one challenge: only the first five attempts are even judged."""
    state = challenge(code_hash=hash_code(KEY, "sub-1", Channel.SMS, 1, "999999"))
    judged = 0
    for guess in range(1_000_000):
        outcome = check_code(state, attempt(f"{guess:06d}"), NOW, 5)
        if outcome is CodeCheck.EXHAUSTED:
            break
        assert outcome is CodeCheck.WRONG
        judged += 1
        state = challenge(code_hash=state.code_hash, attempts=state.attempts + 1)
    assert judged == 5
    assert check_code(state, attempt("999999"), NOW, 5) is CodeCheck.EXHAUSTED


def test_failed_attempts_answer_with_specific_errors() -> None:
    assert isinstance(problem_for(CodeCheck.WRONG, 4), InvalidRequestError)
    assert str(problem_for(CodeCheck.WRONG, 1)) == "wrong code: 1 attempt left"
    assert isinstance(problem_for(CodeCheck.WRONG, 0), TooManyRequestsError)
    assert isinstance(problem_for(CodeCheck.EXHAUSTED, 0), TooManyRequestsError)
    assert isinstance(problem_for(CodeCheck.EXPIRED, 3), GoneError)
    assert isinstance(problem_for(CodeCheck.USED, 3), ConflictError)


@pytest.mark.parametrize(("typed", "clean"), [("123456", "123456"), (" 123 456 ", "123456"), ("123-456", "123456")])
def test_codes_are_accepted_as_people_type_them(typed: str, clean: str) -> None:
    assert clean_code(typed.strip()) == clean


@pytest.mark.parametrize("typed", ["12345", "1234567", "12a456", "١٢٣٤٥٦", ""])
def test_malformed_codes_are_refused(typed: str) -> None:
    with pytest.raises(InvalidRequestError, match="6 digits"):
        clean_code(typed)


def test_resend_is_throttled_by_interval_and_hourly_count() -> None:
    assert resend_wait([], NOW, min_interval_seconds=60, max_per_hour=5) is None
    assert resend_wait([NOW - timedelta(seconds=20)], NOW, min_interval_seconds=60, max_per_hour=5) == 40
    assert resend_wait([NOW - timedelta(seconds=61)], NOW, min_interval_seconds=60, max_per_hour=5) is None
    five = [NOW - timedelta(minutes=m) for m in (50, 40, 30, 20, 10)]
    assert resend_wait(five, NOW, min_interval_seconds=60, max_per_hour=5) == 600
    assert resend_wait(five[1:], NOW, min_interval_seconds=60, max_per_hour=5) is None
    old = [NOW - timedelta(minutes=m) for m in (120, 90, 70, 65, 61)]
    assert resend_wait(old, NOW, min_interval_seconds=60, max_per_hour=5) is None


def test_notification_ids_are_deterministic_per_issue() -> None:
    one = verification_notification_id("sub-1", Channel.SMS, 1)
    assert one == verification_notification_id("sub-1", Channel.SMS, 1)
    assert one != verification_notification_id("sub-1", Channel.SMS, 2)
    assert one != verification_notification_id("sub-1", Channel.EMAIL, 1)


# --- tokens -----------------------------------------------------------------------------------------------------


def test_tokens_round_trip_and_refuse_forgery_and_cross_use() -> None:
    tokens = Tokens("s" * 40)
    manage = tokens.manage("sub-1", "nonce")
    assert tokens.read_manage(manage).subscription_id == "sub-1"
    assert tokens.read_manage(manage).nonce == "nonce"
    unsubscribe_token = tokens.unsubscribe("sub-1", "nonce")
    with pytest.raises(InvalidTokenError):
        tokens.read_manage(unsubscribe_token)
    with pytest.raises(InvalidTokenError):
        tokens.read_unsubscribe(manage)
    with pytest.raises(InvalidTokenError):
        Tokens("t" * 40).read_manage(manage)
    with pytest.raises(InvalidTokenError):
        tokens.read_manage(manage[:-1] + ("A" if manage[-1] != "A" else "B"))
    verify = tokens.verify("sub-1", 3)
    assert tokens.read_verify(verify, 600).issue == 3
    with pytest.raises(InvalidTokenError):
        tokens.read_verify(manage, 600)


def test_verify_links_expire() -> None:
    tokens = Tokens("s" * 40)
    verify = tokens.verify("sub-1", 1)
    with pytest.raises(ExpiredTokenError):
        tokens.read_verify(verify, -1)


@given(st.text(max_size=600))
def test_random_tokens_are_always_refused(text: str) -> None:
    tokens = Tokens("s" * 40)
    with pytest.raises(InvalidTokenError):
        tokens.read_manage(text)
    with pytest.raises((InvalidTokenError, ExpiredTokenError)):
        tokens.read_verify(text, 600)


# --- subscription changes ---------------------------------------------------------------------------------------


def subscription(**changes: object) -> Subscription:
    values: dict[str, object] = {
        "subscription_id": "sub-1",
        "agency_id": "agency",
        "identifier": SubjectIdentifier(kind=IdentifierKind.CASE_NUMBER, value="CR-1"),
        "status": "pending",
        "contacts": (
            Contact(channel=Channel.SMS, ciphertext="c1", masked="+1•••71", blind_index="b1"),
            Contact(channel=Channel.EMAIL, ciphertext="c2", masked="v•••@e•••.org", blind_index="b2"),
        ),
        "language": Language.ENGLISH,
        "timezone": "America/Chicago",
        "event_types": ALL_EVENT_TYPES,
        "quiet_hours_start": time(21),
        "quiet_hours_end": time(7),
        "manage_nonce": "n",
        "version": 1,
        "created_at": NOW,
        "updated_at": NOW,
    }
    values.update(changes)
    return Subscription.model_validate(values)


def test_verifying_activates_and_bumps_the_version() -> None:
    verified = mark_verified(subscription(), Channel.SMS, NOW)
    assert verified.status == "active"
    assert verified.version == 2
    assert verified.contact(Channel.SMS).verified
    assert not verified.contact(Channel.EMAIL).verified
    with pytest.raises(ConflictError):
        mark_verified(verified, Channel.SMS, NOW)
    with pytest.raises(NotFoundError):
        mark_verified(subscription(contacts=()), Channel.SMS, NOW)


def test_stop_and_start_touch_only_sms() -> None:
    stopped = disable_contact(subscription(), Channel.SMS, "opted_out", NOW)
    assert stopped is not None
    assert not stopped.contact(Channel.SMS).active
    assert stopped.contact(Channel.EMAIL).active
    assert disable_contact(stopped, Channel.SMS, "opted_out", NOW) is None, "a second STOP changes nothing"
    resumed = resume_phone(stopped, "b1", NOW)
    assert resumed is not None
    assert resumed.contact(Channel.SMS).active
    assert resumed.version == 3
    bounced = disable_contact(subscription(), Channel.SMS, "hard_bounce", NOW)
    assert bounced is not None
    assert resume_phone(bounced, "b1", NOW) is None, "START does not undo a hard bounce"


def test_start_from_a_number_resumes_its_texts_and_its_calls_and_only_that_numbers() -> None:
    voice = Contact(channel=Channel.VOICE, ciphertext="c3", masked="+1•••71", blind_index="b1", verified=True)
    both = subscription(contacts=(*subscription().contacts, voice))
    stopped = stop_phone(both, "b1", NOW)
    assert stopped is not None
    assert not stopped.contact(Channel.SMS).active
    assert not stopped.contact(Channel.VOICE).active
    assert resume_phone(stopped, "b9", NOW) is None, "START from another number changes nothing"
    resumed = resume_phone(stopped, "b1", NOW)
    assert resumed is not None
    assert resumed.contact(Channel.SMS).active
    assert resumed.contact(Channel.VOICE).active
    assert resumed.contact(Channel.VOICE).disabled_reason is None
    assert resume_phone(resumed, "b1", NOW) is None, "a second START changes nothing"
    assert resume_phone(cancel(stopped, NOW) or stopped, "b1", NOW) is None, "nothing resumes a cancellation"


def test_a_number_for_calls_that_is_the_sms_number_is_verified_by_the_sms_code() -> None:
    same = Contact(channel=Channel.VOICE, ciphertext="c3", masked="+1•••71", blind_index="b1", pin_hash="h")
    other = same.model_copy(update={"blind_index": "b9"})
    both = subscription(contacts=(*subscription().contacts, same))
    assert verified_through_sms(both, same)
    assert code_channel(both, Channel.VOICE) is Channel.SMS
    assert code_channel(both, Channel.EMAIL) is Channel.EMAIL
    verified = mark_verified(both, Channel.SMS, NOW)
    assert verified.contact(Channel.VOICE).verified
    assert not verified.contact(Channel.EMAIL).verified
    apart = subscription(contacts=(*subscription().contacts, other))
    assert not verified_through_sms(apart, other)
    assert code_channel(apart, Channel.VOICE) is Channel.VOICE
    assert not mark_verified(apart, Channel.SMS, NOW).contact(Channel.VOICE).verified


def test_a_number_for_calls_added_later_is_verified_already_when_it_is_the_verified_sms_number() -> None:
    same = Contact(channel=Channel.VOICE, ciphertext="c3", masked="+1•••71", blind_index="b1", pin_hash="h")
    sms_verified = mark_verified(subscription(), Channel.SMS, NOW)
    assert add_contact(sms_verified, same, NOW).contact(Channel.VOICE).verified
    assert not add_contact(subscription(), same, NOW).contact(Channel.VOICE).verified  # its SMS is not verified
    elsewhere = same.model_copy(update={"blind_index": "b9"})
    assert not add_contact(sms_verified, elsewhere, NOW).contact(Channel.VOICE).verified


def test_one_click_unsubscribe_cancels_only_when_nothing_is_left() -> None:
    left_sms = unsubscribe(subscription(status="active"), Channel.EMAIL, NOW)
    assert left_sms is not None
    assert left_sms.status == "active"
    assert not left_sms.contact(Channel.EMAIL).active
    only_email = subscription(contacts=(subscription().contact(Channel.EMAIL),))
    ended = unsubscribe(only_email, Channel.EMAIL, NOW)
    assert ended is not None
    assert ended.status == "cancelled"
    assert unsubscribe(ended, Channel.EMAIL, NOW) is None


def test_preferences_change_only_what_differs_and_refuse_nonsense() -> None:
    original = subscription()
    assert change_preferences(original, NOW, language=Language.ENGLISH) is None
    changed = change_preferences(
        original, NOW, language=Language.SPANISH, event_types=[CustodyStatus.ESCAPED, CustodyStatus.RELEASED]
    )
    assert changed is not None
    assert changed.event_types == (CustodyStatus.RELEASED, CustodyStatus.ESCAPED)
    assert changed.version == 2
    with pytest.raises(InvalidRequestError, match="time zone"):
        change_preferences(original, NOW, timezone="Nowhere/Land")
    with pytest.raises(InvalidRequestError, match="at least one"):
        change_preferences(original, NOW, event_types=[])
    cancelled = cancel(original, NOW)
    assert cancelled is not None
    assert cancel(cancelled, NOW) is None
    with pytest.raises(ConflictError):
        change_preferences(cancelled, NOW, language=Language.SPANISH)


def test_state_carries_only_ciphertext_and_masks() -> None:
    state = subscription().to_state(manage_url_ciphertext="m", unsubscribe_url_ciphertext="u")
    assert [c.ciphertext for c in state.contacts] == ["c1", "c2"]
    assert state.unsubscribe_url_ciphertext == "u"
    sms_only = subscription(contacts=(subscription().contact(Channel.SMS),))
    assert (
        sms_only.to_state(manage_url_ciphertext="m", unsubscribe_url_ciphertext="u").unsubscribe_url_ciphertext is None
    )
    assert subscription().state_event_id() != subscription(version=2).state_event_id()


def test_time_zones_and_event_types() -> None:
    assert validate_timezone("America/Chicago") == "America/Chicago"
    for bad in ("", "Central", "../../etc/passwd", "america/chicago"):
        with pytest.raises(InvalidRequestError):
            validate_timezone(bad)
    assert normalise_event_types(None) == list(CustodyStatus)


def test_rate_limit_windows() -> None:
    hour = timedelta(hours=1)
    assert window_start(NOW + timedelta(minutes=59), hour) == NOW
    assert retry_after(NOW + timedelta(minutes=59, seconds=30), hour) == 30
    assert retry_after(NOW, hour) == 3600


# --- SMS keywords -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "keyword"),
    [
        ("STOP", sms.Keyword.STOP),
        (" stop ", sms.Keyword.STOP),
        ("Stop.", sms.Keyword.STOP),
        ("STOPALL", sms.Keyword.STOP),
        ("unsubscribe", sms.Keyword.STOP),
        ("CANCEL", sms.Keyword.STOP),
        ("end", sms.Keyword.STOP),
        ("Quit!", sms.Keyword.STOP),
        ("START", sms.Keyword.START),
        ("unstop", sms.Keyword.START),
        ("HELP", sms.Keyword.HELP),
        ("ayuda", sms.Keyword.HELP),
        ("ok", sms.Keyword.ACKNOWLEDGE),
        ("1", sms.Keyword.ACKNOWLEDGE),
        ("YES", sms.Keyword.ACKNOWLEDGE),
        ("please stop texting my brother", sms.Keyword.OTHER),
        ("", sms.Keyword.OTHER),
    ],
)
def test_inbound_keywords(body: str, keyword: sms.Keyword) -> None:
    assert sms.classify(body) is keyword


def test_twiml_escapes_and_replies_in_the_subscribers_language() -> None:
    empty = sms.twiml(None)
    assert empty.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert len(ElementTree.fromstring(empty.split("?>", 1)[1])) == 0, "an empty <Response>: no reply"
    assert "<Message>a &amp; b &lt;c&gt;</Message>" in sms.twiml("a & b <c>")
    renderer = default_renderer()
    spanish = renderer.sms_reply(sms.Keyword.HELP, Language.SPANISH, service_name="CW", help_url="https://h")
    assert spanish is not None
    assert "STOP" in spanish
    assert "https://h" in spanish
    assert renderer.sms_reply(sms.Keyword.OTHER, Language.ENGLISH, service_name="CW", help_url="h") is None


# --- settings ---------------------------------------------------------------------------------------------------


def test_production_refuses_development_secrets() -> None:
    with pytest.raises(ValidationError, match="development defaults for: SUBSCRIPTION_CONTACT_ENCRYPTION_KEYS"):
        SubscriptionSettings(environment="production", public_base_url="https://x.example", kafka=PRODUCTION_KAFKA)
    good = SubscriptionSettings(
        environment="production",
        public_base_url="https://subscribe.example.org",
        contact_encryption_keys=f"{generate_key()},{generate_key()}",
        blind_index_key="ee5nPva5KVdbPPOuWj1C9OhQ_JoWv_npftv0HXLZ",
        token_secret="V8kQquMO_7V4x4LernsyNYWuHfOwvDCiGIzHpRMx",
        twilio_auth_token="tAzuAMJKmmtmejtwqxSdR3mggWco1WC7cVJhoASU",
        sms_from_number="+14155550100",
        kafka=PRODUCTION_KAFKA,
    )
    assert good.http_port == 8002
    assert good.service_name == "subscription"
    with pytest.raises(ValidationError, match="https"):
        SubscriptionSettings(**{**good.model_dump(exclude={"kafka"}), "public_base_url": "http://x"})
    with pytest.raises(ValidationError, match="invalid contact encryption key"):
        SubscriptionSettings(environment="test", contact_encryption_keys="nope")


def test_settings_read_the_subscription_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUBSCRIPTION_HTTP_PORT", "9100")
    monkeypatch.setenv("SUBSCRIPTION_KAFKA__TOPIC_PREFIX", "p.")
    monkeypatch.setenv("SUBSCRIPTION_RESEND_MAX_PER_HOUR", "3")
    settings = SubscriptionSettings(environment="test")
    assert settings.http_port == 9100
    assert settings.kafka.topic_prefix == "p."
    assert settings.resend_max_per_hour == 3


def test_every_problem_is_a_4xx() -> None:
    def subclasses(cls: type[SubscriptionError]) -> list[type[SubscriptionError]]:
        return [cls, *(s for sub in cls.__subclasses__() for s in subclasses(sub))]

    assert all(400 <= cls.status_code < 500 for cls in subclasses(SubscriptionError))
