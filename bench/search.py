"""Ranked search benchmark (storage/search.py): how often the dossier a person looks for comes
first, and how long a search takes, at catalog sizes of a province.

    nice .venv/bin/python bench/search.py --dossiers 100000 [--backend sqlite|postgresql|both]

Generates `--dossiers` dossiers with known applicants (Vietnamese surname, middle and given
names), citizen IDs, phones, e-mails, addresses (commune, district, province), procedures and a
page of OCR-like text (sentences of tests/data/van_ban.txt), spread over 10 agencies, and writes
them straight into a fresh catalog (the `dossiers` rows and their search rows, folded by
storage.search.Document as the catalog does; no OCR). SQLite in a temporary file; PostgreSQL in
a fresh database on 127.0.0.1:5432 (dropped afterwards).

Then QUERIES_PER_KIND queries of each kind (accented and unaccented full names, partial and
misspelled names, citizen IDs, codes and their tails, addresses, name + commune, e-mails), each
with the dossier it should find, are run as an auditor of every agency and as a user of the
target's agency (`limit=20`), each three times. It prints, per backend and scope, the mean
reciprocal rank (1/rank of the wanted dossier in the first 20, else 0) per kind and overall, and
the p50/p95 latency of `Catalog.search_dossiers` (ranking, count and snippets).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
from sqlalchemy import insert

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ocr.text import fold  # noqa: E402
from storage.catalog import Catalog  # noqa: E402
from storage.search import Document, Filters  # noqa: E402
from storage.tables import Dossier, SearchText  # noqa: E402

ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
AGENCIES = [f"000.00.{i:02d}.H{40 + i}" for i in range(10)]
SURNAMES = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi",
            "Đỗ", "Hồ", "Ngô", "Dương", "Lý", "Đinh", "Trịnh", "Mai", "Đào", "Cao", "Lương",
            "Tạ", "Chu", "Lâm", "Quách", "Kiều", "Tô", "Hà", "Thái"]
MIDDLES = ["Văn", "Thị", "Hữu", "Đức", "Minh", "Thanh", "Ngọc", "Quốc", "Xuân", "Thu", "Hoài",
           "Bích", "Kim", "Gia", "Anh", "Bảo", "Hồng", "Mạnh", "Công", "Đình", "Trọng", "Phương",
           "Thùy", "Tuấn", "Quang", "Khánh", "Hải", "Tiến", "Diệu", "Mỹ"]
GIVENS = ["An", "Bình", "Cường", "Dũng", "Giang", "Hà", "Hải", "Hạnh", "Hiếu", "Hoa", "Hùng",
          "Hương", "Huy", "Khoa", "Lan", "Linh", "Long", "Mai", "Minh", "Nam", "Nga", "Ngọc",
          "Nhung", "Phong", "Phúc", "Phương", "Quân", "Quang", "Quỳnh", "Sơn", "Tâm", "Thảo",
          "Thắng", "Thành", "Thủy", "Tiến", "Trang", "Trung", "Tú", "Tuấn", "Uyên", "Vân", "Việt",
          "Vinh", "Xuân", "Yến", "Đạt", "Đông", "Hằng", "Khải", "Loan", "Lộc", "Nghĩa", "Oanh",
          "Phát", "Sang", "Tài", "Thịnh", "Toàn", "Trí", "Vũ", "Ánh", "Bảo", "Châu", "Diệp",
          "Duyên", "Hiền", "Kiên", "Lực", "Ngân"]
COMMUNES = ["Hưng Đạo", "Quang Trung", "Lê Lợi", "Tân Phong", "Đồng Tâm", "Hòa Bình", "Thanh Xuân",
            "Phú Thượng", "Mường Thanh", "Hàng Bài", "Yên Phụ", "Đông Hải", "Tân An", "Vĩnh Niệm",
            "Nghĩa Đô", "Cửa Nam", "Bến Thành", "Tam Kỳ", "Hòa Khánh", "Ninh Xá", "Tiền Phong",
            "Đại Mỗ", "Kim Liên", "Trúc Bạch", "Phúc Xá", "Ngọc Hà", "Tràng Tiền", "Đội Cấn"]
DISTRICTS = ["Hoàn Kiếm", "Ba Đình", "Đống Đa", "Cầu Giấy", "Thanh Xuân", "Tây Hồ", "Long Biên",
             "Hoàng Mai", "Hà Đông", "Sơn Tây", "Điện Biên Phủ", "Cao Bằng", "Thái Nguyên",
             "Hạ Long", "Nam Định", "Thanh Hóa", "Vinh", "Huế", "Đà Lạt", "Mỹ Tho"]
PROVINCES = ["Hà Nội", "Điện Biên", "Cao Bằng", "Thái Nguyên", "Quảng Ninh", "Nam Định",
             "Thanh Hóa", "Nghệ An", "Thừa Thiên Huế", "Lâm Đồng", "Tiền Giang"]
PROCEDURES = ["Đăng ký khai sinh", "Cấp giấy chứng nhận quyền sử dụng đất",
              "Đăng ký thành lập hộ kinh doanh", "Cấp bản sao trích lục hộ tịch",
              "Chứng thực bản sao từ bản chính", "Đăng ký kết hôn", "Đăng ký thường trú",
              "Cấp phép xây dựng nhà ở riêng lẻ", "Đăng ký khai tử", "Xác nhận tình trạng hôn nhân"]
QUERIES_PER_KIND = 4
REPEATS = 3


@dataclass(frozen=True)
class Person:
    code: str
    agency: str
    name: str
    citizen_id: str
    phone: str
    email: str
    commune: str
    address: str
    procedure: str


def people(count: int, seed: int = 7) -> list[Person]:
    rnd = random.Random(seed)
    found = []
    for i in range(count):
        agency = AGENCIES[i % len(AGENCIES)]
        day = datetime(2024, 1, 1) + timedelta(days=i // 400)
        name = f"{rnd.choice(SURNAMES)} {rnd.choice(MIDDLES)} {rnd.choice(GIVENS)}"
        commune = rnd.choice(COMMUNES)
        address = (f"Số {rnd.randint(1, 300)} đường {rnd.choice(SURNAMES)} {rnd.choice(GIVENS)}, "
                   f"{rnd.choice(['xã', 'phường'])} {commune}, {rnd.choice(DISTRICTS)}, "
                   f"{rnd.choice(PROVINCES)}")
        email = fold(name).replace(" ", ".") + f"{i}@example.vn"
        found.append(Person(f"{agency}-{day:%y%m%d}-{i:06d}", agency, name,
                            f"0{rnd.randint(1, 96):02d}{rnd.randint(0, 999_999_999):09d}",
                            f"09{rnd.randint(0, 99_999_999):08d}", email, commune, address,
                            rnd.choice(PROCEDURES)))
    return found


def body(rnd: random.Random, sentences: list[str], person: Person) -> list[str]:
    """A receipt's OCR lines: its labels and values, then prose (which names other people,
    places and procedures too, as real files do)."""
    lines = ["CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM", "GIẤY TIẾP NHẬN HỒ SƠ VÀ HẸN TRẢ KẾT QUẢ",
             f"Mã hồ sơ: {person.code}", f"Tiếp nhận hồ sơ của: {person.name}",
             f"Địa chỉ: {person.address}", f"Số điện thoại: {person.phone}",
             f"Nội dung yêu cầu giải quyết: {person.procedure}"]
    lines += rnd.sample(sentences, 6)
    lines.append(f"Người làm chứng: {rnd.choice(SURNAMES)} {rnd.choice(MIDDLES)} "
                 f"{rnd.choice(GIVENS)}, {rnd.choice(COMMUNES)}")
    return lines


def load(catalog: Catalog, persons: list[Person], seed: int = 11) -> float:
    """Writes the dossiers and their search rows in batches; returns the seconds it took."""
    rnd = random.Random(seed)
    sentences = [s.strip() + "." for s in (ROOT / "tests/data/van_ban.txt").read_text().split(".")
                 if len(s.strip()) > 30]
    started = time.perf_counter()
    at = datetime(2024, 6, 1, tzinfo=UTC)
    for start in range(0, len(persons), 2000):
        chunk = persons[start:start + 2000]
        dossiers, texts = [], []
        for p in chunk:
            fields = {"dossier_id": p.code, "applicant_name": p.name, "citizen_id": p.citizen_id,
                      "address": p.address, "phone": p.phone, "email": p.email,
                      "procedure": p.procedure, "received_at": "2024-06-01T09:30:00+07:00"}
            dossiers.append({"code": p.code, "agency": p.agency, "procedure": p.procedure,
                             "latest_version": 1, "updated_at": at})
            texts.append({"code": p.code,
                          **Document.of(p.code, fields, body(rnd, sentences, p)).columns()})
        with catalog.session() as s:
            s.execute(insert(Dossier), dossiers)
            s.execute(insert(SearchText), texts)
        if start % 20000 == 0:
            print(f"  {start + len(chunk)} dossiers", file=sys.stderr, flush=True)
    return time.perf_counter() - started


def misspell(rnd: random.Random, word: str) -> str:
    """One letter of a (folded) word changed, as a hurried typist does."""
    i = rnd.randrange(1, len(word)) if len(word) > 1 else 0
    letter = rnd.choice([c for c in "abcdeghiklmnopqrstuvy" if c != word[i]])
    return word[:i] + letter + word[i + 1:]


def queries(persons: list[Person], seed: int = 3) -> list[tuple[str, str, Person]]:
    """(kind, query, wanted) of each kind, for dossiers picked at random."""
    rnd = random.Random(seed)
    found = []
    for _ in range(QUERIES_PER_KIND):
        p = rnd.choice(persons)
        _, middle, given = p.name.split(" ")
        folded = fold(p.name)
        words = folded.split()
        found += [
            ("name, accented", p.name, p),
            ("name, unaccented", folded, p),
            ("name + commune", f"{folded} {fold(p.commune)}", p),
            ("partial name", fold(f"{middle} {given}") + " " + fold(p.commune), p),
            ("misspelled name", " ".join([*words[:-1], misspell(rnd, words[-1])]), p),
            ("citizen ID", p.citizen_id, p),
            ("code", p.code, p),
            ("code tail", p.code.rsplit("-", 2)[-2] + "-" + p.code.rsplit("-", 1)[-1], p),
            ("address", fold(p.address.split(",")[0]) + " " + fold(p.commune), p),
            ("e-mail", p.email, p),
        ]
    return found


def measure(catalog: Catalog, asked: list[tuple[str, str, Person]], scoped: bool
            ) -> tuple[dict[str, list[float]], list[float]]:
    ranks: dict[str, list[float]] = defaultdict(list)
    times: list[float] = []
    for kind, q, wanted in asked:
        filters = Filters((wanted.agency,) if scoped else None)
        for attempt in range(REPEATS):
            started = time.perf_counter()
            found = catalog.search_dossiers(filters, q, limit=20)
            times.append((time.perf_counter() - started) * 1000)
            if attempt == 0:
                codes = [h.code for h in found.hits]
                ranks[kind].append(1 / (codes.index(wanted.code) + 1)
                                   if wanted.code in codes else 0.0)
    return ranks, times


def report(backend: str, scope: str, ranks: dict[str, list[float]], times: list[float]) -> None:
    every = [r for rs in ranks.values() for r in rs]
    p95 = statistics.quantiles(times, n=20)[-1]
    print(f"\n{backend}, {scope}: MRR {statistics.mean(every):.3f} over {len(every)} queries; "
          f"latency p50 {statistics.median(times):.1f} ms, p95 {p95:.1f} ms, "
          f"max {max(times):.1f} ms ({len(times)} searches)")
    print("| kind | queries | MRR | found first |")
    print("|---|---|---|---|")
    for kind, rs in ranks.items():
        print(f"| {kind} | {len(rs)} | {statistics.mean(rs):.3f} | {sum(r == 1 for r in rs)} |")


def run(backend: str, url: str, persons: list[Person]) -> None:
    catalog = Catalog(url)
    seconds = load(catalog, persons)
    if backend == "postgresql":
        with catalog.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    print(f"\n## {backend}: {len(persons)} dossiers written in {seconds:.0f} s", flush=True)
    asked = queries(persons)
    for scoped in (False, True):
        ranks, times = measure(catalog, asked, scoped)
        report(backend, "one agency's user" if scoped else "every agency", ranks, times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dossiers", type=int, default=100_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    args = parser.parse_args()
    persons = people(args.dossiers)
    if args.backend in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="sohoa-search-") as tmp:
            run("sqlite", f"sqlite:///{Path(tmp) / 'catalog.sqlite3'}", persons)
    if args.backend in ("postgresql", "both"):
        name = f"sohoa_bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            run("postgresql", f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", persons)
        finally:
            from storage.db import engine_for

            engine_for(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}").dispose()
            with psycopg.connect(ADMIN, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
