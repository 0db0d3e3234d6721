"""The loyalty jobs run by the job runner (`pharmo2o worker`, or beside `pharmo2o serve`)."""
from core.jobs import jobs_of, run_due


def test_loyalty_registers_idempotent_jobs(make_ctx):
    ctx = make_ctx(enabled=["loyalty"])
    names = {job.name for job in jobs_of(ctx.registry)}
    assert {"loyalty.vest", "loyalty.expire", "loyalty.tiers"} <= names
    first = run_due(ctx, jobs_of(ctx.registry), {})
    assert not any(isinstance(first[n], Exception) for n in ("loyalty.vest", "loyalty.expire", "loyalty.tiers"))
    assert first["loyalty.vest"] == "" and first["loyalty.expire"] == ""  # nothing pending on an empty ledger
