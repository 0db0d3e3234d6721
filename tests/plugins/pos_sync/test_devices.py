"""Terminal registration, credentials, cloned/restored databases, revocation, store scope."""
import hashlib
import uuid

import pytest
from sqlalchemy import select

from core.auth import Caller
from core.errors import Forbidden, ValidationFailed
from core.models import AuditEntry
from plugins.pos_sync import devices, reports, sales
from plugins.pos_sync.devices import DeviceRefused
from plugins.pos_sync.models import PosDevice, PosSaleFlag
from tests.core.factories import ADMIN, store

from .helpers import manager_of, pos_ctx, sale, shop, statuses, upload


def test_registration_shows_the_secret_once_and_stores_only_its_hash(make_ctx):
    ctx = pos_ctx(make_ctx)
    sh = shop(ctx)
    with ctx.session() as s:
        row = s.get(PosDevice, sh.device_id)
        assert row.secret_hash == hashlib.sha256(sh.secret.encode()).hexdigest()
        assert sh.secret not in repr(devices.serialize_device(row))
        assert s.scalars(select(AuditEntry.action).where(AuditEntry.entity == "pos_device")).all() == [
            "pos.device.register"]
    assert devices.authenticate(ctx, sh.secret, sh.database_id).id == sh.device_id
    assert devices.authenticate(ctx, sh.secret[:-2] + "xx", sh.database_id) is None
    assert devices.authenticate(ctx, "not-a-pos-secret", sh.database_id) is None
    with pytest.raises(ValidationFailed, match="X-POS-Database-Id"):
        devices.authenticate(ctx, sh.secret, None)


def test_store_managers_register_and_see_only_their_own_stores_terminals(make_ctx):
    ctx = pos_ctx(make_ctx)
    a, b = shop(ctx), shop(ctx)
    with ctx.transaction() as s:
        dev, creds = devices.register(s, store_id=a.store_id, name="Counter 2", caller=manager_of(a.store_id))
        assert creds.secret.startswith("pos_") and dev.store_id == a.store_id
        with pytest.raises(Forbidden, match="own store"):
            devices.register(s, store_id=b.store_id, name="Counter 9", caller=manager_of(a.store_id))
        with pytest.raises(Forbidden):
            devices.register(s, store_id=a.store_id, name="Counter 9",
                             caller=Caller(role="clerk", user_id=3, store_id=a.store_id, name="c"))
        with pytest.raises(ValidationFailed, match="name"):
            devices.register(s, store_id=a.store_id, name=" ", caller=ADMIN)
        with pytest.raises(ValidationFailed, match="store_id"):
            devices.register(s, store_id=987654, name="X", caller=ADMIN)
        assert {d.store_id for d in devices.list_devices(s, manager_of(a.store_id)).items} == {a.store_id}
        assert len(devices.list_devices(s, ADMIN).items) == 3
        with pytest.raises(Forbidden):
            devices.list_devices(s, manager_of(a.store_id), store_id=b.store_id)
        with pytest.raises(Forbidden):  # another store's terminal: 403, as for the core's store-bound staff
            devices.revoke(s, b.device_id, manager_of(a.store_id), "lost")


def test_a_cloned_or_restored_terminal_database_is_refused_until_re_registered(make_ctx):
    ctx = pos_ctx(make_ctx)
    sh = shop(ctx)
    assert sh.device(ctx).id == sh.device_id  # the first contact binds the database
    clone = uuid.uuid4().hex
    for _ in range(2):
        with pytest.raises(DeviceRefused, match="another terminal database"):
            devices.authenticate(ctx, sh.secret, clone)
    with ctx.session() as s:
        flags = s.scalars(select(PosSaleFlag)).all()
        assert [f.kind for f in flags] == ["database_mismatch"] and clone in flags[0].detail
    assert sh.device(ctx).id == sh.device_id  # the original keeps working
    with ctx.transaction() as s:
        _, creds = devices.reregister(s, sh.device_id, manager_of(sh.store_id))
    assert devices.authenticate(ctx, sh.secret, sh.database_id) is None  # the old secret is dead
    assert devices.authenticate(ctx, creds.secret, clone).id == sh.device_id  # the new database binds
    with pytest.raises(DeviceRefused):
        devices.authenticate(ctx, creds.secret, sh.database_id)


def test_re_registration_keeps_the_sales_history_so_resends_stay_duplicates(make_ctx):
    ctx = pos_ctx(make_ctx)
    sh = shop(ctx)
    batch = [sale([(sh.product_ids[0], 1, 1000)])]
    assert statuses(upload(ctx, sh, batch)) == ["accepted"]
    with ctx.transaction() as s:
        _, creds = devices.reregister(s, sh.device_id, ADMIN)
    sh.secret, sh.database_id = creds.secret, uuid.uuid4().hex
    assert statuses(upload(ctx, sh, batch)) == ["duplicate"]


def test_a_revoked_terminal_is_refused_everywhere(make_ctx):
    ctx = pos_ctx(make_ctx)
    sh = shop(ctx)
    device = sh.device(ctx)
    with ctx.transaction() as s:
        with pytest.raises(ValidationFailed, match="reason"):
            devices.revoke(s, sh.device_id, ADMIN, "")
        devices.revoke(s, sh.device_id, manager_of(sh.store_id), "stolen from the counter")
        devices.revoke(s, sh.device_id, ADMIN, "again")  # idempotent
    with pytest.raises(DeviceRefused, match="revoked"):
        devices.authenticate(ctx, sh.secret, sh.database_id)
    with pytest.raises(DeviceRefused, match="revoked"):  # an upload already past authentication stops too
        sales.upload(ctx, device, {"sales": [sale([(sh.product_ids[0], 1, 1000)])]})
    with ctx.transaction() as s:
        with pytest.raises(DeviceRefused, match="register a new terminal"):
            devices.reregister(s, sh.device_id, ADMIN)
        assert s.get(PosDevice, sh.device_id).revoke_reason == "stolen from the counter"


def test_sales_go_to_the_terminals_own_store_only(make_ctx):
    ctx = pos_ctx(make_ctx)
    a, b = shop(ctx), shop(ctx)
    # a terminal of store B selling store A's products books them against store B's stock (shortfall there)
    res = upload(ctx, b, [sale([(a.product_ids[0], 2, 1000)])])["results"][0]
    assert res["status"] == "accepted" and res["discrepancies"][0]["short"] == 2
    with ctx.session() as s:
        assert [d.store_id for d in reports.list_discrepancies(s, ADMIN).items] == [b.store_id]
        assert reports.list_discrepancies(s, manager_of(a.store_id)).items == []
        with pytest.raises(Forbidden):
            reports.list_discrepancies(s, manager_of(a.store_id), store_id=b.store_id)
        with pytest.raises(Forbidden):
            reports.sync_status(s, manager_of(a.store_id), store_id=b.store_id)


def test_a_closed_store_cannot_get_terminals(make_ctx):
    ctx = pos_ctx(make_ctx)
    with ctx.transaction() as s:
        st = store(s, active=False)
        with pytest.raises(ValidationFailed, match="closed"):
            devices.register(s, store_id=st.id, name="X", caller=ADMIN)
