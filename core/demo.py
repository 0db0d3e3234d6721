"""A realistic demo chain for ``pharmo2o demo``: stores, a drug catalogue, lot
stock (one lot already expired), staff of every role and a few customers.

Everything goes through the core services (validation, audit, movements), in
one transaction: either the whole demo is loaded or nothing is. Loading is
idempotent: when the first demo store exists the data is left alone.

The approval numbers and barcodes have the real formats but are invented;
so are the manufacturers.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import func, select

from . import catalog, people, stock
from .auth import Caller
from .models import Customer, Product, StockLot, Store, User

__all__ = ["load_demo", "DemoResult", "DEMO_STORES", "DEMO_PRODUCTS", "DEMO_USERS", "DEMO_CUSTOMERS",
           "EXPIRED_LOT_NO", "CLI_CALLER"]

#: who the demo (and the other CLI commands) act as in movements and the audit log
CLI_CALLER = Caller(role="system", name="cli")

DEMO_STORES = (
    {"code": "DEMO-SH01", "name": "仁和大药房（徐汇店）", "address": "上海市徐汇区漕溪北路88号", "phone": "021-64380001"},
    {"code": "DEMO-SH02", "name": "仁和大药房（浦东店）", "address": "上海市浦东新区张杨路500号", "phone": "021-58360002"},
    {"code": "DEMO-HZ01", "name": "仁和大药房（杭州文三路店）", "address": "浙江省杭州市西湖区文三路259号", "phone": "0571-88210003"},
)

# (sku, generic name, brand, specification, pack, dosage form, manufacturer, approval number,
#  category, rx class, price in fen, extra fields)
_HK = "华康制药有限公司"
_JA = "济安药业股份有限公司"
_TD = "同德堂药业有限公司"
_BC = "北辰生物制药有限公司"
_RH = "瑞和制药（苏州）有限公司"
_AT = "安泰药业集团有限公司"
_KY = "康源制药有限公司"
_PRODUCTS = (
    # prescription drugs (Rx)
    ("YP100101", "阿莫西林胶囊", "阿莫仙", "0.25g", "0.25g×24粒/盒", "胶囊剂", _HK, "国药准字H13023961", "抗感染", "rx", 1580, {}),
    ("YP100102", "头孢克肟分散片", "世福素", "0.1g", "0.1g×6片/盒", "片剂", _RH, "国药准字H20030718", "抗感染", "rx", 2860, {}),
    ("YP100103", "阿奇霉素片", "希舒美", "0.25g", "0.25g×6片/盒", "片剂", _JA, "国药准字H10960167", "抗感染", "rx", 3250, {}),
    ("YP100104", "左氧氟沙星片", "可乐必妥", "0.5g", "0.5g×4片/盒", "片剂", _AT, "国药准字H20000655", "抗感染", "rx", 2480, {}),
    ("YP100201", "苯磺酸氨氯地平片", "络活喜", "5mg", "5mg×28片/盒", "片剂", _RH, "国药准字H10950224", "心脑血管", "rx", 3680, {}),
    ("YP100202", "硝苯地平控释片", "拜新同", "30mg", "30mg×12片/盒", "控释片", _KY, "国药准字H20063204", "心脑血管", "rx", 4150, {}),
    ("YP100203", "阿托伐他汀钙片", "立普妥", "20mg", "20mg×7片/盒", "片剂", _HK, "国药准字H20051408", "心脑血管", "rx", 4520, {}),
    ("YP100204", "瑞舒伐他汀钙片", "可定", "10mg", "10mg×7片/盒", "片剂", _JA, "国药准字H20080260", "心脑血管", "rx", 3990, {}),
    ("YP100205", "氯沙坦钾片", "科素亚", "50mg", "50mg×7片/盒", "片剂", _AT, "国药准字H20030654", "心脑血管", "rx", 3860, {}),
    ("YP100206", "阿司匹林肠溶片", "拜阿司匹灵", "100mg", "100mg×30片/盒", "肠溶片", _KY, "国药准字HJ20160685", "心脑血管", "rx", 1650, {}),
    ("YP100207", "硫酸氢氯吡格雷片", "波立维", "75mg", "75mg×7片/盒", "片剂", _RH, "国药准字HJ20171237", "心脑血管", "rx", 9850, {}),
    ("YP100208", "厄贝沙坦氢氯噻嗪片", "安博诺", "150mg/12.5mg", "7片/盒", "片剂", _HK, "国药准字H20083384", "心脑血管", "rx", 3120, {}),
    ("YP100301", "盐酸二甲双胍缓释片", "格华止", "0.5g", "0.5g×30片/盒", "缓释片", _JA, "国药准字H20023370", "糖尿病", "rx", 2290, {}),
    ("YP100302", "格列美脲片", "亚莫利", "2mg", "2mg×30片/盒", "片剂", _AT, "国药准字H20057672", "糖尿病", "rx", 2760, {}),
    ("YP100303", "甘精胰岛素注射液", "长秀霖", "3ml:300单位", "3ml:300单位×1支/盒", "注射剂", _BC, "国药准字S20050051", "糖尿病", "rx", 18900,
     {"cold_chain": True, "storage": "2℃～8℃冷藏，避光，不得冷冻"}),
    ("YP100401", "奥美拉唑肠溶胶囊", "洛赛克", "20mg", "20mg×14粒/盒", "肠溶胶囊", _KY, "国药准字H20033071", "消化系统", "rx", 2580, {}),
    ("YP100402", "孟鲁司特钠片", "顺尔宁", "10mg", "10mg×5片/盒", "片剂", _RH, "国药准字H20083372", "呼吸系统", "rx", 3850, {}),
    ("YP100403", "甲钴胺片", "弥可保", "0.5mg", "0.5mg×20片/盒", "片剂", _HK, "国药准字H20143107", "神经系统", "rx", 2980, {}),
    ("YP100404", "布地奈德鼻喷雾剂", "雷诺考特", "64μg/喷", "120喷/瓶", "喷雾剂", _JA, "国药准字H20140812", "五官科", "rx", 6280, {}),
    ("YP100501", "地西泮片", "", "2.5mg", "2.5mg×20片/瓶", "片剂", _AT, "国药准字H31021803", "精神神经", "rx", 550,
     {"online_banned": True, "storage": "遮光，密封保存；第二类精神药品，专柜存放"}),
    # OTC class A (甲类)
    ("YP200101", "对乙酰氨基酚片", "必理通", "0.5g", "0.5g×12片/盒", "片剂", _KY, "国药准字H20023508", "解热镇痛", "otc_a", 650, {}),
    ("YP200102", "布洛芬缓释胶囊", "芬必得", "0.3g", "0.3g×20粒/盒", "缓释胶囊", _RH, "国药准字H10900089", "解热镇痛", "otc_a", 1890, {}),
    ("YP200103", "复方氨酚烷胺片", "快克", "12片", "12片/盒", "片剂", _HK, "国药准字H20023386", "感冒用药", "otc_a", 1280, {}),
    ("YP200104", "复方盐酸伪麻黄碱缓释胶囊", "新康泰克", "10粒", "10粒/盒", "缓释胶囊", _JA, "国药准字H10940182", "感冒用药", "otc_a", 2150,
     {"ephedrine": True, "storage": "密封，在干燥处保存；含麻黄碱类复方制剂，凭身份证登记购买，每次不超过2个最小包装"}),
    ("YP200105", "小儿氨酚黄那敏颗粒", "护彤", "6g×10袋", "6g×10袋/盒", "颗粒剂", _AT, "国药准字H44023780", "儿童用药", "otc_a", 1280, {}),
    ("YP200106", "感冒灵颗粒", "", "10g×9袋", "10g×9袋/盒", "颗粒剂", _TD, "国药准字Z44021940", "感冒用药", "otc_a", 1650, {}),
    ("YP200107", "蒙脱石散", "思密达", "3g×10袋", "3g×10袋/盒", "散剂", _KY, "国药准字H20000690", "消化系统", "otc_a", 1560, {}),
    ("YP200108", "多潘立酮片", "吗丁啉", "10mg", "10mg×30片/盒", "片剂", _RH, "国药准字H10910003", "消化系统", "otc_a", 2050, {}),
    ("YP200109", "莫匹罗星软膏", "百多邦", "2%:5g", "5g/支", "软膏剂", _HK, "国药准字H10930064", "皮肤用药", "otc_a", 1980, {}),
    ("YP200110", "酮康唑乳膏", "采乐", "2%:10g", "10g/支", "乳膏剂", _JA, "国药准字H10930199", "皮肤用药", "otc_a", 1350, {}),
    ("YP200111", "马来酸氯苯那敏片", "扑尔敏", "4mg", "4mg×100片/瓶", "片剂", _AT, "国药准字H33021157", "抗过敏", "otc_a", 320, {}),
    ("YP200112", "藿香正气水", "", "10ml×10支", "10ml×10支/盒", "酊剂", _TD, "国药准字Z51020649", "中成药", "otc_a", 1250, {}),
    ("YP200113", "云南白药气雾剂", "", "85g+30g", "1套/盒", "气雾剂", _TD, "国药准字Z53020798", "骨伤科", "otc_a", 3800, {}),
    # OTC class B (乙类)
    ("YP300101", "氯雷他定片", "开瑞坦", "10mg", "10mg×6片/盒", "片剂", _KY, "国药准字H10970410", "抗过敏", "otc_b", 1850, {}),
    ("YP300102", "盐酸西替利嗪片", "仙特明", "10mg", "10mg×12片/盒", "片剂", _RH, "国药准字H20010827", "抗过敏", "otc_b", 2380, {}),
    ("YP300103", "铝碳酸镁咀嚼片", "达喜", "0.5g", "0.5g×20片/盒", "咀嚼片", _HK, "国药准字H20013141", "消化系统", "otc_b", 2480, {}),
    ("YP300104", "板蓝根颗粒", "", "10g×20袋", "10g×20袋/包", "颗粒剂", _TD, "国药准字Z44020709", "中成药", "otc_b", 1580, {}),
    ("YP300105", "健胃消食片", "", "0.8g×32片", "0.8g×32片/盒", "片剂", _TD, "国药准字Z36021465", "中成药", "otc_b", 1350, {}),
    ("YP300106", "六味地黄丸", "", "浓缩丸200丸", "200丸/瓶", "丸剂", _TD, "国药准字Z41022026", "中成药", "otc_b", 2150, {}),
    ("YP300107", "维生素C片", "", "0.1g", "0.1g×100片/瓶", "片剂", _AT, "国药准字H32020863", "维生素与矿物质", "otc_b", 350, {}),
    ("YP300108", "复合维生素B片", "", "100片", "100片/瓶", "片剂", _KY, "国药准字H31020786", "维生素与矿物质", "otc_b", 450, {}),
    ("YP300109", "葡萄糖酸钙口服溶液", "", "10ml×12支", "10ml×12支/盒", "口服溶液剂", _JA, "国药准字H20054545", "维生素与矿物质", "otc_b", 2680, {}),
    ("YP300110", "红霉素软膏", "", "1%:10g", "10g/支", "软膏剂", _HK, "国药准字H31022015", "皮肤用药", "otc_b", 280, {}),
    ("YP300111", "开塞露（含甘油）", "", "20ml", "20ml×2支/盒", "灌肠剂", _AT, "国药准字H37021316", "消化系统", "otc_b", 500, {}),
)

_FIELDS = ("sku", "generic_name", "brand_name", "specification", "pack", "dosage_form", "manufacturer",
           "approval_number", "category", "rx_class", "price_fen")


def _ean13(body12: str) -> str:
    """Append the EAN-13 check digit."""
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(body12))
    return body12 + str((10 - total % 10) % 10)


def _product_rows() -> tuple[dict, ...]:
    rows = []
    for i, row in enumerate(_PRODUCTS):
        data = dict(zip(_FIELDS, row[:11]))
        data.update(row[11])
        data["barcode"] = _ean13(f"6931{i + 1:08d}")
        data["mah"] = data["manufacturer"]
        data.setdefault("storage", "密封，置阴凉干燥处（不超过20℃）")
        if data["rx_class"] == "rx":
            data["package_insert"] = f"【药品名称】{data['generic_name']}\n【规格】{data['specification']}\n" \
                                     "【用法用量】遵医嘱。\n【不良反应】详见说明书。"
        rows.append(data)
    return tuple(rows)


DEMO_PRODUCTS = _product_rows()

#: the lot received before it expired and now expired: visible on hand, never sold
EXPIRED_LOT_NO = "EXP2301A"
_EXPIRED = {"store": "DEMO-SH01", "sku": "YP200101", "qty": 12, "days_ago": 20}
_NEAR_EXPIRY = {"store": "DEMO-SH02", "sku": "YP300107", "qty": 30, "days": 25}

DEMO_USERS = (
    {"username": "demo.admin", "password": "demo-admin-2024", "role": "admin", "display_name": "周文涛", "store": None},
    {"username": "demo.manager.sh01", "password": "demo-manager-2024", "role": "store_manager",
     "display_name": "陈思远", "store": "DEMO-SH01"},
    {"username": "demo.manager.sh02", "password": "demo-manager-2024", "role": "store_manager",
     "display_name": "刘海燕", "store": "DEMO-SH02"},
    {"username": "demo.manager.hz01", "password": "demo-manager-2024", "role": "store_manager",
     "display_name": "黄子豪", "store": "DEMO-HZ01"},
    {"username": "demo.pharmacist.sh01", "password": "demo-pharmacist-2024", "role": "pharmacist",
     "display_name": "王静（执业药师）", "store": "DEMO-SH01", "licence_number": "YS3101202300118"},
    {"username": "demo.pharmacist.sh02", "password": "demo-pharmacist-2024", "role": "pharmacist",
     "display_name": "赵明（执业药师）", "store": "DEMO-SH02", "licence_number": "YS3101202100342"},
    {"username": "demo.pharmacist.hz01", "password": "demo-pharmacist-2024", "role": "pharmacist",
     "display_name": "孙丽华（执业药师）", "store": "DEMO-HZ01", "licence_number": "YS3301202200057"},
    {"username": "demo.clerk.sh01", "password": "demo-clerk-2024", "role": "clerk", "display_name": "吴晓晨",
     "store": "DEMO-SH01"},
    {"username": "demo.clerk.sh02", "password": "demo-clerk-2024", "role": "clerk", "display_name": "郑雨欣",
     "store": "DEMO-SH02"},
    {"username": "demo.clerk.hz01", "password": "demo-clerk-2024", "role": "clerk", "display_name": "冯博文",
     "store": "DEMO-HZ01"},
)

DEMO_CUSTOMERS = (
    {"name": "张伟", "phone": "13800138001", "openid": "oDemo7bmjrPTlm6_2sgVt7hMZOPf01", "store": "DEMO-SH01"},
    {"name": "李秀英", "phone": "13911112222", "openid": "oDemo7bmjrPTlm6_2sgVt7hMZOPf02", "store": "DEMO-SH01"},
    {"name": "王芳", "phone": "13700001234", "openid": "oDemo7bmjrPTlm6_2sgVt7hMZOPf03", "store": "DEMO-SH02"},
    {"name": "刘洋", "phone": "13655556666", "openid": None, "store": "DEMO-SH02"},
    {"name": "陈静", "phone": "13588889999", "openid": "oDemo7bmjrPTlm6_2sgVt7hMZOPf05", "store": "DEMO-HZ01"},
    {"name": "杨磊", "phone": "18612345678", "openid": None, "store": "DEMO-HZ01"},
)


@dataclass
class DemoResult:
    created: bool  # False when the demo chain was already there
    stores: int = 0
    products: int = 0
    lots: int = 0
    users: int = 0
    customers: int = 0
    credentials: list[dict] = field(default_factory=list)


def credentials() -> list[dict]:
    return [{"username": u["username"], "password": u["password"], "role": u["role"], "store": u["store"] or "-"}
            for u in DEMO_USERS]


def _lots_for(store_index: int, product_index: int, today: dt.date) -> list[tuple[str, dt.date, int]]:
    """Deterministic but varied lots: not every store stocks every product, some have two lots."""
    if (product_index + 2 * store_index) % 9 == 8:
        return []
    lots = []
    days = 60 + ((product_index * 97 + store_index * 41) % 22) * 30
    qty = 10 + (product_index * 13 + store_index * 7) % 90
    made = today - dt.timedelta(days=720 - days)
    lots.append((f"{made:%y%m}{product_index:02d}{store_index + 1}A", today + dt.timedelta(days=days), qty))
    if product_index % 4 == store_index % 4:
        later = days + 240
        lots.append((f"{(made + dt.timedelta(days=240)):%y%m}{product_index:02d}{store_index + 1}B",
                     today + dt.timedelta(days=later), 20 + qty // 2))
    return lots


def load_demo(ctx, today: dt.date | None = None) -> DemoResult:
    """Load the demo chain once; a second call finds it and changes nothing."""
    today = today or stock.today_utc()
    caller = CLI_CALLER
    with ctx.transaction() as session:
        if session.scalar(select(Store.id).where(Store.code == DEMO_STORES[0]["code"])) is not None:
            return DemoResult(created=False, credentials=credentials())
        stores = {s["code"]: people.create_store(session, dict(s), caller) for s in DEMO_STORES}
        products = {p["sku"]: catalog.create_product(session, dict(p), caller) for p in DEMO_PRODUCTS}
        lots = 0
        for si, code in enumerate(stores):
            for pi, sku in enumerate(products):
                for lot_no, expiry, qty in _lots_for(si, pi, today):
                    stock.receive(ctx, session, stores[code].id, products[sku].id, lot_no, expiry, qty, caller,
                                  reference="demo opening stock", today=today)
                    lots += 1
        expiry = today - dt.timedelta(days=_EXPIRED["days_ago"])
        stock.receive(ctx, session, stores[_EXPIRED["store"]].id, products[_EXPIRED["sku"]].id, EXPIRED_LOT_NO,
                      expiry, _EXPIRED["qty"], caller, reference="demo: received before it expired",
                      today=expiry - dt.timedelta(days=365))
        stock.receive(ctx, session, stores[_NEAR_EXPIRY["store"]].id, products[_NEAR_EXPIRY["sku"]].id, "NEAR2405C",
                      today + dt.timedelta(days=_NEAR_EXPIRY["days"]), _NEAR_EXPIRY["qty"], caller,
                      reference="demo: near expiry", today=today)
        lots += 2
        for u in DEMO_USERS:
            data = {k: u[k] for k in ("username", "password", "role", "display_name")}
            if u["store"]:
                data["store_id"] = stores[u["store"]].id
            if u.get("licence_number"):
                data["licence_number"] = u["licence_number"]
                data["licence_expiry"] = (today + dt.timedelta(days=2 * 365)).isoformat()
            people.create_user(session, data, caller)
        for c in DEMO_CUSTOMERS:
            data = {k: c[k] for k in ("name", "phone", "openid") if c[k]}
            data["store_id"] = stores[c["store"]].id
            people.create_customer(session, data, caller)
        return DemoResult(created=True, stores=len(stores), products=len(products), lots=lots,
                          users=len(DEMO_USERS), customers=len(DEMO_CUSTOMERS), credentials=credentials())


def counts(session) -> dict[str, int]:
    """Row counts shown after loading (and used by the tests)."""
    return {name: session.scalar(select(func.count()).select_from(model))
            for name, model in (("stores", Store), ("products", Product), ("lots", StockLot),
                                ("users", User), ("customers", Customer))}
