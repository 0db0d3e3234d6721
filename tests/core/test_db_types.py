"""core.db's column types, bound as SQLAlchemy binds them: the SQLite text of UTCDateTime, and the
JSON columns' text (orjson, the json module where orjson refuses)."""
import datetime as dt
import json
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import DateTime, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import StatementError

from core.db import UTCDateTime, json_text
from core.models import ApiToken, AuditEntry

UTC8 = dt.timezone(dt.timedelta(hours=8))
TIMES = [
    dt.datetime(2026, 11, 26, 2, 31, 8, 260253, tzinfo=dt.timezone.utc),
    dt.datetime(2026, 11, 26, 2, 31, 8, tzinfo=dt.timezone.utc),  # no microseconds: still written
    dt.datetime(2026, 11, 26, 10, 31, 8, 5, tzinfo=UTC8),  # another offset: converted to UTC
    dt.datetime(2026, 3, 29, 2, 30, tzinfo=ZoneInfo("Asia/Shanghai")),
    dt.datetime(999, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),  # a year under 1000: four digits
    dt.datetime(2026, 11, 26, 0, 0, tzinfo=ZoneInfo("UTC")),  # UTC, not as dt.timezone.utc
]


def _stock_text(value):
    """What process_bind_param followed by SQLAlchemy's own SQLite DATETIME processor writes."""
    dialect = sqlite.dialect()
    stock = DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect)
    return stock(UTCDateTime().process_bind_param(value, dialect))


@pytest.mark.parametrize("value", TIMES, ids=str)
def test_sqlite_text_is_what_sqlalchemy_writes(value):
    dialect = sqlite.dialect()
    fast = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert fast(value) == _stock_text(value)
    assert fast(None) is None


def test_sqlite_refuses_a_naive_time():
    dialect = sqlite.dialect()
    fast = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    with pytest.raises(ValueError, match="naive datetime"):
        fast(dt.datetime(2026, 11, 26, 2, 31))


def test_times_round_trip_and_compare_in_the_database(ctx):
    """Stored through the processor, read back aware in UTC, and ordered by the stored text."""
    with ctx.transaction() as s:
        for i, when in enumerate(TIMES):
            s.add(ApiToken(token_hash=f"{i:064d}", role="clerk", expires_at=when))
    with ctx.session() as s:
        rows = s.execute(select(ApiToken.token_hash, ApiToken.expires_at).order_by(ApiToken.expires_at)).all()
        assert [r.expires_at for r in rows] == sorted(TIMES)
        assert all(r.expires_at.utcoffset() == dt.timedelta(0) for r in rows)
        later = s.execute(select(ApiToken.token_hash).where(ApiToken.expires_at > TIMES[1])).scalars().all()
        assert sorted(int(h) for h in later) == [0, 2]


def test_sqlite_text_of_a_time_written_again_is_still_its_own():
    """The last text is remembered (a batch writes one 'now' many times): an equal instant gives
    the same text, whatever its offset; a naive time is still refused; another time gets its own."""
    dialect = sqlite.dialect()
    fast = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    now = TIMES[0]
    assert fast(now) == fast(now) == fast(now.astimezone(UTC8)) == _stock_text(now)
    with pytest.raises(ValueError, match="naive datetime"):
        fast(now.replace(tzinfo=None))
    assert fast(now) == _stock_text(now)
    for value in TIMES + TIMES[::-1]:
        assert fast(value) == _stock_text(value)


JSON_VALUES = [
    {"reason": "连锁自定：暂停线上销售", "lines": [{"qty": 3, "fen": 2580}], "ok": True, "none": None, "pi": 3.14159},
    [1, -2, 2**63 - 1, 1e16, 0.1 + 0.2, "😀", "\u202eRTL", ""],
    {"big": 2**70},  # over 64 bits: orjson refuses, the json module writes it
    {1: "a key that is not a string"},  # the json module makes it "1"
    "plain text", 0, None,
]


@pytest.mark.parametrize("value", JSON_VALUES, ids=range(len(JSON_VALUES)))
def test_a_json_column_reads_back_what_the_json_module_would(ctx, value):
    from core import audit
    with ctx.transaction() as s:
        entry = audit.record(s, "test", "json.check", "test", before=value, after={"v": value})
        s.flush()
        entry_id = entry.id
    with ctx.session() as s:
        back = s.get(AuditEntry, entry_id)
        expected = json.loads(json.dumps(value))
        assert back.before == expected and back.after == {"v": expected}


def test_a_json_column_still_refuses_what_json_cannot_write(ctx):
    from core import audit
    with pytest.raises((StatementError, TypeError), match="not JSON serializable"):  # as SQLAlchemy raises it
        with ctx.transaction() as s:
            audit.record(s, "test", "json.check", "test", after={"when": dt.datetime.now(dt.timezone.utc)})
            s.flush()


def test_json_text_is_compact_utf8_and_falls_back_to_the_json_module():
    assert json_text({"a": "药", "b": [1, None]}) == '{"a":"药","b":[1,null]}'
    assert json_text({"big": 2**70}) == json.dumps({"big": 2**70})
    assert json_text({1: "x"}) == '{"1": "x"}'
