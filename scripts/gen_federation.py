#!/usr/bin/env python3
"""Generates examples/federation/*.yaml: a realistic district federation
(Liên đoàn Lao động thành phố Hạ Long under the provincial federation of
Quảng Ninh) with 128 grassroots unions, their officers, groups and the
document types. Deterministic (fixed seed): re-running gives the same files.

The certificate fingerprints are made up (derived from the names); replace
them with your CA's and your officers' real ones. Usage:
  python3 scripts/gen_federation.py [OUT_DIR]   (default examples/federation)
"""
import hashlib
import os
import random
import sys

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "examples", "federation")
rnd = random.Random(20250301)

def fp(*parts):
    return hashlib.sha256("|".join(parts).encode()).hexdigest()

def q(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'

SURNAMES = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ", "Đặng", "Bùi", "Đỗ", "Hồ", "Ngô",
            "Dương", "Lý", "Phan", "Trịnh", "Đinh", "Lương", "Mai", "Tạ", "Cao"]
MIDDLE_F = ["Thị", "Thị Thu", "Thị Minh", "Ngọc", "Thị Hồng", "Thanh", "Thị Kim", "Bảo"]
MIDDLE_M = ["Văn", "Đức", "Minh", "Quốc", "Hữu", "Công", "Xuân", "Thành", "Đình"]
GIVEN_F = ["Duyên", "Hương", "Lan", "Hà", "Ngọc", "Thảo", "Trang", "Huyền", "Nhung", "Yến",
           "Phương", "Loan", "Hằng", "Mai", "Oanh", "Thủy", "Vân", "Quỳnh"]
GIVEN_M = ["Hùng", "Dũng", "Tuấn", "Long", "Cường", "Thắng", "Hải", "Nam", "Sơn", "Quang",
           "Trung", "Khánh", "Phúc", "Bình", "Thành", "Đạt", "Hiếu", "Kiên"]

def person():
    if rnd.random() < 0.55:
        return f"{rnd.choice(SURNAMES)} {rnd.choice(MIDDLE_F)} {rnd.choice(GIVEN_F)}"
    return f"{rnd.choice(SURNAMES)} {rnd.choice(MIDDLE_M)} {rnd.choice(GIVEN_M)}"

WARDS = ["Bãi Cháy", "Hồng Gai", "Hòn Gai", "Bạch Đằng", "Trần Hưng Đạo", "Hồng Hải", "Cao Xanh",
         "Hà Khánh", "Hà Lầm", "Hà Trung", "Hà Phong", "Hà Tu", "Cao Thắng", "Giếng Đáy",
         "Hùng Thắng", "Tuần Châu", "Việt Hưng", "Đại Yên", "Hồng Hà", "Yết Kiêu", "Hoành Bồ",
         "Thống Nhất", "Sơn Dương", "Lê Lợi"]
SCHOOL_KINDS = [("mn", "Trường Mầm non"), ("th", "Trường Tiểu học"), ("thcs", "Trường THCS"),
                ("thpt", "Trường THPT")]
COMPANIES = [
    ("than-ha-tu", "Công ty CP Than Hà Tu – Vinacomin"),
    ("than-ha-lam", "Công ty CP Than Hà Lầm – Vinacomin"),
    ("than-nui-beo", "Công ty CP Than Núi Béo – Vinacomin"),
    ("nhiet-dien-qn", "Công ty CP Nhiệt điện Quảng Ninh"),
    ("cang-qn", "Công ty CP Cảng Quảng Ninh"),
    ("xi-mang-ha-long", "Công ty CP Xi măng Hạ Long"),
    ("nuoc-sach-qn", "Công ty CP Nước sạch Quảng Ninh"),
    ("moi-truong-do-thi", "Công ty CP Môi trường Đô thị Hạ Long"),
    ("xe-buyt-qn", "Công ty TNHH Xe buýt Quảng Ninh"),
    ("du-lich-tuan-chau", "Công ty CP Du lịch Tuần Châu"),
    ("khach-san-ha-long", "Công ty TNHH Khách sạn Hạ Long"),
    ("dong-tau-ha-long", "Công ty TNHH MTV Đóng tàu Hạ Long"),
    ("may-ha-long", "Công ty CP May Hạ Long"),
    ("bia-ha-long", "Công ty CP Bia Hạ Long"),
    ("dien-luc-ha-long", "Điện lực Hạ Long"),
    ("buu-dien-ha-long", "Bưu điện thành phố Hạ Long"),
]
HEALTH = [
    ("bv-bai-chay", "Bệnh viện Bãi Cháy"),
    ("bv-san-nhi", "Bệnh viện Sản Nhi Quảng Ninh"),
    ("ttyt-ha-long", "Trung tâm Y tế thành phố Hạ Long"),
    ("bv-lao-phoi", "Bệnh viện Lao và Phổi Quảng Ninh"),
]

def ascii_slug(s):
    table = str.maketrans(
        "àáảãạăằắẳẵặâầấẩẫậèéẻẽẹêềếểễệìíỉĩịòóỏõọôồốổỗộơờớởỡợùúủũụưừứửữựỳýỷỹỵđ"
        "ÀÁẢÃẠĂẰẮẲẴẶÂẦẤẨẪẬÈÉẺẼẸÊỀẾỂỄỆÌÍỈĨỊÒÓỎÕỌÔỒỐỔỖỘƠỜỚỞỠỢÙÚỦŨỤƯỪỨỬỮỰỲÝỶỸỴĐ",
        "aaaaaaaaaaaaaaaaaeeeeeeeeeeeiiiiiooooooooooooooooouuuuuuuuuuuyyyyyd"
        "AAAAAAAAAAAAAAAAAEEEEEEEEEEEIIIIIOOOOOOOOOOOOOOOOOUUUUUUUUUUUYYYYYD")
    words = ["".join(c for c in w if c.isascii() and c.isalnum()) for w in s.translate(table).lower().split()]
    return "-".join(w for w in words if w)

# --- unions ------------------------------------------------------------------
province = dict(id="ldld-quang-ninh", name="Liên đoàn Lao động tỉnh Quảng Ninh", code="LĐLĐ-QN",
                level="province", host="ldld.quangninh.example.vn")
district = dict(id="ldld-ha-long", name="Liên đoàn Lao động thành phố Hạ Long", code="LĐLĐ-HL",
                level="district", parent=province["id"], host="ldld.halong.example.vn")
grassroots = []
groups = {"khoi-giao-duc": [], "khoi-doanh-nghiep": [], "khoi-hanh-chinh": [], "khoi-y-te": []}

for ward in WARDS:
    for key, kind in SCHOOL_KINDS:
        if len(grassroots) >= 80:
            break
        if rnd.random() < 0.85:
            gid = f"cd-{key}-{ascii_slug(ward)}"
            grassroots.append(dict(id=gid, name=f"Công đoàn cơ sở {kind} {ward}", group="khoi-giao-duc"))
for slug, name in COMPANIES:
    grassroots.append(dict(id=f"cd-{slug}", name=f"Công đoàn {name}", group="khoi-doanh-nghiep"))
for slug, name in HEALTH:
    grassroots.append(dict(id=f"cd-{slug}", name=f"Công đoàn cơ sở {name}", group="khoi-y-te"))
for ward in WARDS:
    if len(grassroots) >= 128:
        break
    grassroots.append(dict(id=f"cd-ubnd-{ascii_slug(ward)}", name=f"Công đoàn cơ sở UBND phường {ward}",
                           group="khoi-hanh-chinh"))
extra = ["Ban Quản lý Vịnh Hạ Long", "Kho bạc Nhà nước Hạ Long", "Chi cục Thuế khu vực Hạ Long",
         "Trung tâm Văn hóa – Thể thao Hạ Long", "Ban Quản lý dự án Đầu tư xây dựng Hạ Long",
         "Cục Hải quan Quảng Ninh", "Đài Phát thanh và Truyền hình Quảng Ninh"]
for name in extra:
    if len(grassroots) >= 128:
        break
    grassroots.append(dict(id=f"cd-{ascii_slug(name)}",
                           name=f"Công đoàn cơ sở {name}", group="khoi-hanh-chinh"))
n = 1
while len(grassroots) < 128:
    grassroots.append(dict(id=f"cd-doanh-nghiep-so-{n}",
                           name=f"Công đoàn cơ sở Doanh nghiệp ngoài nhà nước số {n}", group="khoi-doanh-nghiep"))
    n += 1
assert len(grassroots) == 128, len(grassroots)
assert len({g["id"] for g in grassroots}) == 128
for i, g in enumerate(grassroots, 1):
    g["code"] = f"CĐCS-{i:03d}"
    groups[g["group"]].append(g["id"])

def union_yaml(u, level, parent):
    lines = [f"  - id: {u['id']}",
             f"    name: {q(u['name'])}",
             f"    code: {q(u['code'])}",
             f"    level: {level}"]
    if parent:
        lines.append(f"    parent: {parent}")
    host = u.get("host", u["id"] + ".halong.example.vn")
    lines += [f"    endpoint: {q('https://' + host + ':8443')}",
              "    tls_identity:",
              f"      spki_sha256: {q(fp('tls', u['id']))}",
              "    seal:",
              f"      spki_sha256: {q(fp('seal', u['id']))}",
              f"    email: {q('vanthu@' + host)}"]
    if level != "grassroots":
        lines.append(f"    webhook: {q('https://zalo-bridge.halong.example.vn/hook/' + u['id'])}")
    return "\n".join(lines)

HEADER = "# Generated by scripts/gen_federation.py — edit the script, not this file.\n"

with open(os.path.join(OUT, "unions.yaml"), "w", encoding="utf-8") as f:
    f.write(HEADER)
    f.write("# The registry: the provincial federation, the district federation of Hạ Long\n")
    f.write("# and its 128 grassroots unions (công đoàn cơ sở).\n")
    f.write("unions:\n")
    f.write(union_yaml(province, "province", None) + "\n")
    f.write(union_yaml(district, "district", province["id"]) + "\n")
    for g in grassroots:
        f.write(union_yaml(g, "grassroots", district["id"]) + "\n")

GROUP_NAMES = {"khoi-giao-duc": "Khối Giáo dục", "khoi-doanh-nghiep": "Khối Doanh nghiệp",
               "khoi-hanh-chinh": "Khối Hành chính – Sự nghiệp", "khoi-y-te": "Khối Y tế"}
with open(os.path.join(OUT, "groups.yaml"), "w", encoding="utf-8") as f:
    f.write(HEADER)
    f.write("groups:\n")
    for gid, members in groups.items():
        f.write(f"  - id: {gid}\n    name: {q(GROUP_NAMES[gid])}\n    members:\n")
        for m in members:
            f.write(f"      - {m}\n")

# --- officers ------------------------------------------------------------------
VNPT_ISSUER = "CN=VNPT Certification Authority, OU=VNPT-CA Trust Network, O=VNPT Group, C=VN"
officers = []
used_ids = set()

def officer(union, role, start, until=None):
    name = person()
    base = ascii_slug(name)
    oid = f"{base}-{union['id'].removeprefix('cd-').removeprefix('ldld-')}"
    k = 2
    while oid in used_ids:
        oid = f"{base}-{union['id'].removeprefix('cd-')}-{k}"
        k += 1
    used_ids.add(oid)
    form = rnd.random()
    if form < 0.4:
        cert = ["      issuer: " + q(VNPT_ISSUER),
                "      serial: " + q(fp("serial", oid)[:32].upper())]
    elif form < 0.75:
        cccd = f"0221{rnd.randrange(10**8):08d}"
        cert = ["      subject: " + q(f"CN={name}, UID=CCCD:{cccd}, L=Hạ Long, ST=Quảng Ninh, C=VN"),
                "      ca: vnpt-ca"]
    else:
        cert = ["      spki_sha256: " + q(fp("officer", oid))]
    lines = [f"  - id: {oid}", f"    name: {q(name)}", f"    role: {role}", f"    union: {union['id']}",
             "    certificate:"] + cert + ["    mandate:", f"      from: {start}"]
    if until:
        lines.append(f"      until: {until}")
    officers.append("\n".join(lines))

for u in (province, district):
    officer(u, "chair", "2023-07-01", "2028-06-30")
    officer(u, "vice-chair", "2023-07-01", "2028-06-30")
    officer(u, "vice-chair", "2023-07-01", "2028-06-30")
    officer(u, "standing-member", "2023-07-01", "2028-06-30")
    officer(u, "accountant", "2021-01-01")
    officer(u, "treasurer", "2021-01-01")
    officer(u, "clerk", "2020-03-01")
for g in grassroots:
    officer(g, "chair", "2023-01-01", "2027-12-31")
    if rnd.random() < 0.6:
        officer(g, "vice-chair", "2023-01-01", "2027-12-31")
    officer(g, "accountant", "2022-01-01")
    if rnd.random() < 0.5:
        officer(g, "clerk", "2022-01-01")

with open(os.path.join(OUT, "officers.yaml"), "w", encoding="utf-8") as f:
    f.write(HEADER)
    f.write("# Officers and the certificates that prove who they are. Mandates run\n")
    f.write("# from 'from' to 'until' inclusive (Vietnam dates); no 'until': open-ended.\n")
    f.write("officers:\n")
    f.write("\n".join(officers) + "\n")

with open(os.path.join(OUT, "federation.yaml"), "w", encoding="utf-8") as f:
    f.write(HEADER)
    f.write(f"""federation:
  id: ldld-ha-long
  name: "Liên đoàn Lao động thành phố Hạ Long"
trust:
  anchors:
    - id: vnpt-ca
      name: "VNPT Certification Authority"
      sha256: "{fp('anchor', 'vnpt-ca')}"
    - id: viettel-ca
      name: "Viettel-CA"
      sha256: "{fp('anchor', 'viettel-ca')}"
    - id: ldld-internal-ca
      name: "CA nội bộ Liên đoàn Lao động tỉnh Quảng Ninh"
      sha256: "{fp('anchor', 'ldld-internal-ca')}"
  crl_sources:
    - anchor: vnpt-ca
      url: "http://crl.vnpt-ca.example.vn/vnpt-ca.crl"
    - anchor: viettel-ca
      url: "http://crl.viettel-ca.example.vn/viettel-ca.crl"
    - anchor: ldld-internal-ca
      url: "https://pki.ldld.quangninh.example.vn/ca.crl"
""")
