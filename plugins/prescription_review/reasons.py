"""The coded reasons a pharmacist rejects a prescription with, and the text the customer sees by default."""
from __future__ import annotations

from typing import NamedTuple

__all__ = ["Reason", "REASONS", "HOLD_REASON"]

#: recorded on an order held for review (``order.hold_reasons``)
HOLD_REASON = "prescription review: upload the prescription for its Rx lines; a licensed pharmacist reviews it"


class Reason(NamedTuple):
    code: str
    label: str  # for staff
    customer_text: str  # shown to the customer unless the pharmacist writes their own


REASONS: dict[str, Reason] = {r.code: r for r in (
    Reason("expired", "Prescription expired",
           "处方已超过有效期（开具当日有效，医师注明延长的最多3天），请重新就诊开具处方后再下单。"),
    Reason("illegible", "Document unreadable or incomplete",
           "处方图片不清晰或不完整，请重新拍摄完整、清晰的处方后在新订单中提交。"),
    Reason("incomplete", "Required information missing",
           "处方缺少必要信息（患者、医师签名、医疗机构或开具日期等），请补全后在新订单中提交。"),
    Reason("not_covered", "Ordered items or quantities not on the prescription",
           "订单中的处方药品或数量超出处方范围，请按处方调整后重新下单。"),
    Reason("substitution", "Ordered product differs from the prescribed one",
           "订单药品与处方药品不一致，药师不能替换药品，请按处方选择药品后重新下单。"),
    Reason("reused", "Prescription already used",
           "该处方已被使用，不能重复使用。"),
    Reason("patient_mismatch", "Patient details do not match the prescription",
           "患者信息与处方不一致，请核对后重新提交。"),
    Reason("not_authentic", "Prescription cannot be verified",
           "无法核实处方的真实性，请提交医疗机构开具的有效处方。"),
    Reason("inappropriate", "Inappropriate medication (contraindication, dose, interaction)",
           "经药师审核，处方用药存在不适宜情况，请咨询开方医师。"),
    Reason("other", "Other (explain to the customer)",
           "处方未通过药师审核，详情请联系门店药师。"),
)}
