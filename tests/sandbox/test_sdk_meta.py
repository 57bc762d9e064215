"""The Meta sandbox as Meta's official Python SDK (``facebook-business``) sees it, over loopback.

The SDK builds its requests the way every Marketing API client learns from it (form fields of JSON text,
``access_token`` in the query, DELETE parameters in the query string, its own hashing and normalisation)
and parses answers with its object classes, whose declared fields mirror Graph's. Each read here checks that
the fake sends only fields those classes declare, with the declared primitive types.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest
from facebook_business.adobjects.adaccount import AdAccount
from facebook_business.adobjects.customaudience import CustomAudience
from facebook_business.adobjects.customaudiencesession import CustomAudienceSession
from facebook_business.api import FacebookAdsApi
from facebook_business.exceptions import FacebookRequestError
from facebook_business.session import FacebookSession

from connectors.sandbox import MetaLimits, MetaSandbox, serve_on_loopback

TOKEN = "sdk-meta-token"
ACCOUNT = "1000000000001"
Schema = CustomAudience.Schema
MakeMeta = Callable[..., MetaSandbox]
_PRIMITIVES: dict[str, type] = {"string": str, "int": int, "unsigned int": int, "bool": bool}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def make_meta(clock: Any) -> MakeMeta:
    """A Meta sandbox factory with the test token, ad account and clock; keyword arguments go to MetaSandbox."""

    def make(**kwargs: Any) -> MetaSandbox:
        kwargs.setdefault("token", TOKEN)
        kwargs.setdefault("ad_account_id", ACCOUNT)
        kwargs.setdefault("clock", clock)
        return MetaSandbox(**kwargs)

    return make


@contextmanager
def graph(box: MetaSandbox, *, token: str = TOKEN, app_secret: str | None = None) -> Iterator[FacebookAdsApi]:
    """An SDK api object pointed at ``box`` on a loopback socket (no global default api is set)."""
    with serve_on_loopback(box.app) as url:
        session = FacebookSession(access_token=token, app_secret=app_secret)
        session.GRAPH = url  # the SDK joins GRAPH, the version and the path
        try:
            yield FacebookAdsApi(session, api_version="v25.0")
        finally:
            session.requests.close()


def off_model(cls: type, data: Mapping[str, Any]) -> list[str]:
    """Fields of ``data`` the SDK class does not declare, or whose value lacks the declared primitive type."""
    declared: dict[str, str] = cls._field_types  # type: ignore[attr-defined]
    unknown = [name for name in data if name not in declared]
    mistyped = [f"{name}: {type(value).__name__} is not {declared[name]}" for name, value in data.items()
                if declared.get(name) in _PRIMITIVES and not isinstance(value, _PRIMITIVES[declared[name]])]
    return unknown + mistyped


def rejected(call: Callable[[], Any]) -> FacebookRequestError:
    with pytest.raises(FacebookRequestError) as caught:
        call()
    return caught.value


def test_audience_and_ad_account_read(make_meta: MakeMeta) -> None:
    """An audience and its ad account read through the SDK carry only declared, correctly typed fields."""
    box = make_meta(known_people=[{"EMAIL": sha("ada@example.com")}])
    audience = box.create_audience("Hot leads", description="scored 80+")
    fields = ["name", "description", "subtype", "customer_file_source", "operation_status", "account_id",
              "approximate_count_lower_bound", "approximate_count_upper_bound", "time_created", "time_updated"]
    with graph(box) as api:
        CustomAudience(audience, api=api).add_users(Schema.email_hash, ["ada@example.com"])
        read = CustomAudience(audience, api=api).api_get(fields=fields).export_all_data()
        account = AdAccount(f"act_{ACCOUNT}", api=api).api_get(
            fields=["account_id", "name", "account_status", "currency", "timezone_name", "business"]
        ).export_all_data()
    assert off_model(CustomAudience, read) == []
    assert off_model(AdAccount, account) == []
    assert (read["name"], read["subtype"], read["operation_status"]["code"]) == ("Hot leads", "CUSTOM", 200)
    assert read["approximate_count_lower_bound"] == 1
    assert (account["account_status"], account["business"]["id"]) == (1, box.business_id)


def test_create_and_list_audiences(make_meta: MakeMeta) -> None:
    """``create_custom_audience`` makes a CUSTOM customer-file audience that ``get_custom_audiences`` lists."""
    box = make_meta()
    with graph(box) as api:
        account = AdAccount(f"act_{ACCOUNT}", api=api)
        created = account.create_custom_audience(params={
            "name": "Demo requests", "subtype": "CUSTOM", "customer_file_source": "USER_PROVIDED_ONLY"})
        listed = [a.export_all_data() for a in account.get_custom_audiences(fields=["name", "subtype"])]
    assert listed == [{"id": created["id"], "name": "Demo requests", "subtype": "CUSTOM"}]
    assert off_model(CustomAudience, listed[0]) == []
    assert box.audiences[created["id"]].customer_file_source == "USER_PROVIDED_ONLY"


def test_add_users_hashes_normalised_emails(make_meta: MakeMeta) -> None:
    """``add_users`` with EMAIL_SHA256 normalises and hashes; the answer counts rows and matches known people."""
    box = make_meta(known_people=[{"EMAIL": sha("ada@example.com")}])
    audience = box.create_audience("a")
    with graph(box) as api:
        answer = CustomAudience(audience, api=api).add_users(Schema.email_hash, ["  Ada@Example.COM ",
                                                                                "bob@example.com"]).json()
    assert answer == {**answer, "audience_id": audience, "num_received": 2, "num_invalid_entries": 0,
                      "invalid_entry_samples": {}}
    assert box.member_values(audience) == {sha("ada@example.com"), sha("bob@example.com")}
    assert box.matched_people(audience) == 1


def test_add_users_multi_key_rows(make_meta: MakeMeta) -> None:
    """A multi-key ``is_raw`` upload arrives as one member with every key hashed as the SDK normalised it."""
    box = make_meta()
    audience = box.create_audience("a")
    schema = ["EMAIL", "PHONE", "FN", "LN", "COUNTRY", "EXTERN_ID"]
    row = ["Cy@Example.com", "+1 (415) 555-0100", "Cy", "O'Neil", "US", "crm-7"]
    with graph(box) as api:
        answer = CustomAudience(audience, api=api).add_users(schema, [row], is_raw=True).json()
    assert (answer["num_received"], answer["num_invalid_entries"]) == (1, 0)
    assert box.members(audience) == [{"EMAIL": sha("cy@example.com"), "PHONE": sha("14155550100"), "FN": sha("cy"),
                                      "LN": sha("oneil"), "COUNTRY": sha("us"), "EXTERN_ID": "crm-7"}]


def test_remove_users_through_the_query_string(make_meta: MakeMeta) -> None:
    """``remove_users`` sends DELETE with its parameters in the query string; the named people leave."""
    box = make_meta()
    audience = box.create_audience("a")
    people = [f"{name}@example.com" for name in ("ann", "ben", "cat")]
    with graph(box) as api:
        target = CustomAudience(audience, api=api)
        target.add_users(Schema.email_hash, people)
        answer = target.remove_users(Schema.email_hash, people[:2]).json()
    assert (answer["num_received"], answer["num_invalid_entries"]) == (2, 0)
    assert box.member_values(audience) == {sha("cat@example.com")}
    assert box.stats.requests["DELETE /{audience_id}/users"] == 1


def test_session_spans_several_batches(make_meta: MakeMeta) -> None:
    """Batches of one ``session`` add up in ``get_sessions``: uploading mid-way, finished after the last."""
    box = make_meta()
    audience = box.create_audience("a")
    batches = [[f"p{seq}-{i}@example.com" for i in range(2)] for seq in (1, 2, 3)]

    def session(seq: int) -> dict[str, Any]:
        return {"session_id": 4242, "batch_seq": seq, "last_batch_flag": seq == 3, "estimated_num_total": 6}

    with graph(box) as api:
        target = CustomAudience(audience, api=api)
        answers = [target.add_users(Schema.email_hash, batches[0], session=session(1)).json(),
                   target.add_users(Schema.email_hash, batches[1], session=session(2)).json()]
        midway = [s.export_all_data() for s in target.get_sessions(params={"session_id": 4242})]
        answers.append(target.add_users(Schema.email_hash, batches[2], session=session(3)).json())
        done = [s.export_all_data() for s in target.get_sessions(params={"session_id": 4242})]
    assert {a["session_id"] for a in answers} == {"4242"}
    assert [(s["num_received"], s["progress"], s["stage"]) for s in midway] == [("4", "66", "uploading")]
    assert [(s["num_received"], s["progress"], s["stage"]) for s in done] == [("6", "100", "finished")]
    assert off_model(CustomAudienceSession, done[0]) == []
    assert len(box.member_values(audience)) == 6


def test_bad_and_expired_tokens_raise_code_190(make_meta: MakeMeta) -> None:
    """A wrong token is FacebookRequestError 190 OAuthException (token not echoed); an expired one 190/463."""
    box = make_meta(expired_tokens={"old-token"})
    audience = box.create_audience("a")
    errors = []
    for token in ("wrong-token-value", "old-token"):
        with graph(box, token=token) as api:
            errors.append(rejected(lambda api=api: CustomAudience(audience, api=api).api_get(fields=["name"])))
    wrong, expired = errors
    assert (wrong.api_error_code(), wrong.api_error_subcode(), wrong.api_error_type()) == (190, None, "OAuthException")
    assert "wrong-token-value" not in json.dumps(wrong.body())
    assert (expired.api_error_code(), expired.api_error_subcode()) == (190, 463)


def test_bad_hash_is_counted_not_refused(make_meta: MakeMeta) -> None:
    """A pre-hashed value that is no SHA-256 digest is an invalid entry with a sample, not a failed call."""
    box = make_meta()
    audience = box.create_audience("a")
    with graph(box) as api:
        answer = CustomAudience(audience, api=api).add_users(
            Schema.email_hash, ["not-a-hash", sha("ok@example.com")], pre_hashed=True
        ).json()
    assert (answer["num_received"], answer["num_invalid_entries"]) == (2, 1)
    assert list(answer["invalid_entry_samples"]) == ["not-a-hash"]
    assert box.member_values(audience) == {sha("ok@example.com")}


def test_bad_schema_and_flagged_audience_raise_code_100(make_meta: MakeMeta) -> None:
    """An unknown schema key is 100; an upload to a flagged audience is 100/1713230 "Audience Upload Blocked"."""
    box = make_meta()
    audience, flagged = box.create_audience("a"), box.create_audience("f", flagged=True)
    with graph(box) as api:
        schema = rejected(lambda: CustomAudience(audience, api=api).add_users(
            ["EMAIL", "NICKNAME"], [[sha("a@example.com"), "ace"]], is_raw=True, pre_hashed=True))
        blocked = rejected(lambda: CustomAudience(flagged, api=api).add_users(Schema.email_hash, ["a@example.com"]))
    assert (schema.api_error_code(), schema.http_status()) == (100, 400)
    assert (blocked.api_error_code(), blocked.api_error_subcode()) == (100, 1713230)
    assert blocked.body()["error"]["error_user_title"] == "Audience Upload Blocked"


def test_throttle_is_transient_with_usage_header(make_meta: MakeMeta) -> None:
    """Over the ad account's budget the SDK raises 80003, transient, with the BUC usage header at 100 %."""
    box = make_meta(limits=MetaLimits(calls_per_hour=2, per_audience=0))
    audience = box.create_audience("a")
    with graph(box) as api:
        target = CustomAudience(audience, api=api)
        target.add_users(Schema.email_hash, ["a@example.com"])
        target.add_users(Schema.email_hash, ["b@example.com"])
        throttled = rejected(lambda: target.add_users(Schema.email_hash, ["c@example.com"]))
    usage = json.loads(throttled.http_headers()["X-Business-Use-Case-Usage"])[box.business_id][0]
    assert (throttled.api_error_code(), throttled.api_transient_error()) == (80003, True)
    assert (usage["type"], usage["call_count"]) == ("custom_audience", 100)
    assert usage["estimated_time_to_regain_access"] >= 1
    assert box.member_values(audience) == {sha("a@example.com"), sha("b@example.com")}


def test_appsecret_proof_from_the_sdk(make_meta: MakeMeta) -> None:
    """The SDK's appsecret_proof is accepted for the right secret and refused (code 100) for a wrong one."""
    box = make_meta(app_secret="s3cret")
    audience = box.create_audience("a")
    with graph(box, app_secret="s3cret") as api:
        name = CustomAudience(audience, api=api).api_get(fields=["name"])["name"]
    with graph(box, app_secret="not-the-secret") as api:
        wrong = rejected(lambda: CustomAudience(audience, api=api).api_get(fields=["name"]))
    assert name == "a"
    assert wrong.api_error_code() == 100


def test_uid_and_appuid_schemas_need_app_ids(make_meta: MakeMeta) -> None:
    """UID rows (with ``app_ids``) and APPUID columns are accepted as the SDK sends them; no app_ids is 100."""
    box = make_meta()
    audience = box.create_audience("a")
    with graph(box) as api:
        target = CustomAudience(audience, api=api)
        uid = target.add_users(Schema.uid, ["100004567890123"], app_ids=["555000111"]).json()
        appuid = target.add_users(["EMAIL", "APPUID"], [["dee@example.com", "987654"]], is_raw=True,
                                  app_ids=["555000111"]).json()
        missing = rejected(lambda: target.add_users(["EMAIL", "APPUID"], [["eve@example.com", "1"]], is_raw=True))
    assert (uid["num_received"], uid["num_invalid_entries"]) == (1, 0)
    assert (appuid["num_received"], appuid["num_invalid_entries"]) == (1, 0)
    assert {"UID": "100004567890123"} in box.members(audience)
    assert box.member_values(audience, "APPUID") == {sha("987654")}  # the SDK hashes every multi-key column
    assert missing.api_error_code() == 100
