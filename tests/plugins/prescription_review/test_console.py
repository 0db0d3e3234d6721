"""The pharmacist's review page at /console/review, in real headless Chromium: sign in, see the queue with
waiting times, open a prescription beside its order (the document shown), approve, and reject with a reason."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update

from core.models import OutboxMessage
from plugins.prescription_review.models import AccessLog, Prescription

from .helpers import held, rx_api, rx_fields, today, upload

PAPER = """<html><body style="margin:0;font-family:'Noto Sans CJK SC',sans-serif;background:#fff">
<div style="width:560px;padding:28px;border:3px double #333;margin:12px">
<div style="text-align:center;font-size:24px;font-weight:700">{institution}</div>
<div style="text-align:center;font-size:20px;letter-spacing:8px;margin:6px 0 14px">处 方 笺</div>
<div style="font-size:15px;line-height:1.9">No. {number}　　日期：{date}<br>
姓名：{patient}　　性别：男　　年龄：42岁<br>临床诊断：急性支气管炎</div>
<hr><div style="font-size:22px;font-weight:700">Rp.</div>
<div style="font-size:17px;line-height:2;padding-left:24px">{lines}</div>
<hr><div style="font-size:15px">医师：{doctor}（签名）　　审核：　　　调配：</div></div></body></html>"""


def paper(browser, fields: dict, lines: list[str]) -> bytes:
    """A prescription rendered by Chromium itself: a real PNG, as a phone photo would be uploaded."""
    page = browser.new_page(viewport={"width": 620, "height": 560})
    page.set_content(PAPER.format(institution=fields["institution"], number=fields["prescription_number"],
                                  date=fields["issue_date"], patient=fields["patient_name"],
                                  doctor=fields["prescriber"], lines="<br>".join(lines)))
    data = page.screenshot(full_page=True, type="png")
    page.close()
    return data


def test_a_pharmacist_reviews_in_the_browser(make_api, tmp_path, browser, live_server, console_for):
    api = rx_api(make_api, tmp_path)
    o1 = held(api, [(api.rx, 2), (api.otc, 1)])
    f1 = rx_fields([(api.rx, 2)], number="BJ-20261125-0042")
    doc1 = paper(browser, f1, ["阿莫西林胶囊 0.25g×24粒　× 2 盒", "用法：每次0.5g，每日3次，口服"])
    p1 = upload(api, o1["id"], fields=f1, document=doc1).json
    o2 = held(api, [(api.rx2, 1)])
    f2 = rx_fields([(api.rx2, 1)], number="BJ-20261125-0057", patient_name="赵丽")
    p2 = upload(api, o2["id"], fields=f2, document=paper(browser, f2, ["氨氯地平片 5mg×28片　× 1 盒"])).json
    with api.ctx.transaction() as s:  # the first has waited 40 minutes
        s.execute(update(Prescription).where(Prescription.id == p1["id"]).values(
            submitted_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=40)))
    server = live_server(api.app)

    c = console_for(server).login("pharmacist")
    assert "review" in c.nav_ids()
    c.go("review")
    page = c.page
    rows = page.eval_on_selector_all("tr[data-prescription]", "els => els.map(e => e.dataset.prescription)")
    assert rows == [str(p1["id"]), str(p2["id"])]  # oldest first
    first = page.locator(f"tr[data-prescription='{p1['id']}']")
    assert "40 min" in first.inner_text() and first.locator(".late").count() == 1
    assert "王**" in first.inner_text()  # names masked in the queue
    c.shot("review-queue")

    # open the oldest: the document beside the order lines
    first.click()
    page.wait_for_selector(f"[data-detail='{p1['id']}'] img.rx-doc-img[data-loaded=true]")
    detail = page.locator(f"[data-detail='{p1['id']}']")
    text = detail.inner_text()
    for expected in ("王小明", "110105194912310", "北京协和医院", "BJ-20261125-0042", "阿莫西林胶囊", "✓ covered",
                     "no Rx", "valid today"):
        assert expected in text, expected
    natural = page.eval_on_selector("img.rx-doc-img", "img => [img.naturalWidth, img.naturalHeight]")
    assert natural[0] >= 500 and natural[1] >= 400  # the real image, decoded by the browser
    c.shot("review-open")
    with api.ctx.session() as s:
        reads = s.scalars(select(AccessLog.action).where(AccessLog.prescription_id == p1["id"])
                          .order_by(AccessLog.id)).all()
    assert reads == ["view", "document"]  # opening it in the browser was logged

    # claim, then approve with a note
    page.click("[data-action=claim]")
    page.wait_for_selector("[data-claim='user:pharmacist']")
    page.click("[data-action=approve]")
    page.fill("dialog textarea[name=note]", "剂量、用法适宜")
    page.click("dialog button[type=submit]")
    page.wait_for_selector(f"[data-detail='{p1['id']}'][data-status=approved] [data-outcome=approved]")
    assert api.get(f"/api/v1/orders/{o1['id']}").json["status"] == "awaiting_payment"
    assert page.eval_on_selector_all("tr[data-prescription]", "els => els.length") == 1  # left the queue

    # the other: reject with a coded reason; the customer's text comes with the reason
    page.click(f"tr[data-prescription='{p2['id']}']")
    page.wait_for_selector(f"[data-detail='{p2['id']}'] img.rx-doc-img[data-loaded=true]")
    page.click("[data-action=reject]")
    page.select_option("dialog select[name=reason_code]", "illegible")
    prefilled = page.input_value("dialog textarea[name=message]")
    assert prefilled.startswith("处方图片不清晰")
    c.shot("review-reject-dialog")
    page.fill("dialog textarea[name=note]", "照片反光，剂量看不清")
    page.click("dialog button[type=submit]")
    page.wait_for_selector(f"[data-detail='{p2['id']}'][data-status=rejected]")
    assert "处方图片不清晰" in page.inner_text("[data-outcome=rejected]")
    assert api.get(f"/api/v1/orders/{o2['id']}").json["status"] == "cancelled"
    with api.ctx.session() as s:
        msg = s.scalars(select(OutboxMessage).where(OutboxMessage.payload["event"].as_string()
                                                    == "prescription.rejected")).one()
        assert msg.payload["order_id"] == o2["id"]
    page.wait_for_selector(".rx-queue .empty")
    page.select_option("select[name=status]", "")
    page.wait_for_selector(f"tr[data-prescription='{p2['id']}']")
    page.click(f"tr[data-prescription='{p1['id']}']")
    page.wait_for_selector(f"[data-detail='{p1['id']}'] .rx-history")
    assert "licence PH-0001" in page.inner_text(".rx-history")
    c.shot("review-history")
    c.assert_clean()


def test_a_pharmacist_without_a_current_licence_sees_the_refusal(make_api, tmp_path, live_server, console_for):
    api = rx_api(make_api, tmp_path)
    o = held(api, [(api.rx, 1)])
    p = upload(api, o["id"]).json
    api.patch(f"/api/v1/users/{api.user_ids['pharmacist']}",
              json={"licence_expiry": (today() - dt.timedelta(days=1)).isoformat()})
    c = console_for(live_server(api.app)).login("pharmacist")
    c.go("review")
    c.page.click(f"tr[data-prescription='{p['id']}']")
    c.page.wait_for_selector("[data-action=approve]")
    c.page.click("[data-action=approve]")
    c.page.click("dialog button[type=submit]")
    c.page.wait_for_selector("dialog .form-error:has-text('not current')")
    c.shot("review-licence-expired")
    assert api.get(f"/api/v1/orders/{o['id']}").json["status"] == "awaiting_review"


def test_other_roles_do_not_get_the_page(make_api, tmp_path, live_server, console_for):
    api = rx_api(make_api, tmp_path)
    server = live_server(api.app)
    for role in ("clerk", "store_manager", "admin"):
        c = console_for(server).login(role)
        assert "review" not in c.nav_ids()
        c.open("/console/review")
        c.page.wait_for_selector("[data-refused=review]")
