"""A sale's content hash is SHA-256 of ``json.dumps(sale, sort_keys=True, separators=(",", ":"))``:
the hashes stored with earlier uploads were made so, and a sale sent again must hash the same
(else it is refused as other content under a known id). The fast path (orjson) must give that text."""
import datetime as dt
import hashlib
import json

from hypothesis import given, settings, strategies as st

from plugins.pos_sync.sales import content_hash, parse_sale


def stored(sale: dict) -> str:
    canonical = {k: v for k, v in sale.items() if k != "total_fen"}
    canonical["sold_at"] = sale["sold_at"].isoformat()
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# any character but NUL (refused by parse_sale) and lone surrogates (not valid text in a JSON body)
# (the characters where the two writers could differ drawn often: DEL, controls, quotes, non-ASCII)
TEXT = st.text(st.one_of(st.sampled_from("\x7f\x01\x1f\n\t\"\\/~ é中\u2028"),
                         st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")), max_size=12)
INT = st.one_of(st.integers(0, 2**63 - 1), st.integers(2**63, 2**70))  # over 64 bits: the json module's path


@settings(max_examples=400, deadline=None)
@given(note=st.one_of(st.none(), TEXT), lot=st.one_of(st.none(), TEXT.filter(lambda t: len(t) <= 64)),
       reference=st.one_of(st.none(), TEXT), version=INT, points=INT, seq=st.integers(0, 2**62),
       rx=st.one_of(st.none(), st.integers(1, 10**6), TEXT))
def test_the_hash_is_the_stored_one_for_any_sale(note, lot, reference, version, points, seq, rx):
    raw = {"client_sale_id": "s-1", "device_seq": seq, "sold_at": "2026-11-26T09:30:00.123456+08:00",
           "note": note, "redeem_points": points, "prescription_id": rx,
           "lines": [{"line_id": "l-1", "product_id": 7, "quantity": 2, "unit_price_fen": 550,
                      "price_list_version": version, "lot_no": lot}],
           "payments": [{"method": "cash", "amount_fen": 1100, "reference": reference}]}
    sale = parse_sale(raw)
    assert content_hash(sale) == stored(sale)


def test_known_sales_keep_their_hash():
    sale = parse_sale({"client_sale_id": "a", "device_seq": 1, "sold_at": "2026-11-26T09:30:00+08:00",
                       "note": "布洛芬 \x7f\n\t\"\\", "lines": [{"line_id": "1", "product_id": 1, "quantity": 1,
                                                                "unit_price_fen": 100, "price_list_version": 2}],
                       "payments": [{"method": "wechat", "amount_fen": 100}]})
    plain, delete = dict(sale, note="plain ASCII"), dict(sale, note="rubbed out\x7f")
    assert content_hash(sale) == stored(sale) and content_hash(plain) == stored(plain)
    assert content_hash(delete) == stored(delete)
    assert content_hash(sale) != content_hash(plain)
    assert sale["sold_at"] == dt.datetime(2026, 11, 26, 1, 30, tzinfo=dt.timezone.utc)
