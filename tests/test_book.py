from __future__ import annotations

from pathlib import Path

import pytest

from rag.ingest.front import anchor_page, find_front_matter, parse_copyright, parse_toc
from rag.config import ROOT

EXCERPT = ROOT / "corpus" / "qunzhong-gongzuo-excerpt.txt"


@pytest.fixture(scope="module")
def lines() -> list[str]:
    return EXCERPT.read_text(encoding="utf-8").split("\n")


def _zone_text(lines: list[str], name: str) -> str:
    zones, _ = find_front_matter(lines)
    zone = next(z for z in zones if z.name == name)
    return "\n".join(lines[zone.start:zone.end])


def test_front_matter_zones_of_the_excerpt(lines: list[str]) -> None:
    zones, body_start = find_front_matter(lines)
    assert [z.name for z in zones] == ["封面", "扉页", "版权页", "序言", "目录"]
    by_name = {z.name: z for z in zones}
    assert by_name["扉页"].kind == "skip"  # the repeated title page
    assert lines[by_name["版权页"].start] == "责任编辑：杜念峰"
    assert lines[by_name["序言"].start] == "序 言"
    assert lines[by_name["目录"].end - 1].strip().startswith("后 记")
    assert lines[body_start:][:3] == ["", "第一章", ""]


def test_toc_rows(lines: list[str]) -> None:
    toc = parse_toc(_zone_text(lines, "目录"))
    assert len(toc) == 8 * 4 + 1  # eight chapters of three sections each, and 后记
    chapters = {e.number: e for e in toc if e.level == 1 and e.number}
    assert chapters["第六章"].page == "125" and chapters["第六章"].title == "开拓“网络群工”是新手段"
    assert chapters["第一章"].page == "1"  # "001" printed
    assert chapters["第一章"].title == "做好群众工作是中国共产党人的历史责任"
    afterword = toc[-1]
    assert (afterword.level, afterword.number, afterword.title, afterword.page) == (1, "", "后记", "207")
    ch3 = [e for e in toc if e.parent.startswith("第三章")]
    assert [(e.number, e.page) for e in ch3] == [("第一节", "53"), ("第二节", "60"), ("第三节", "67")]
    assert ch3[2].title == "做好服务群众“最后一公里”工作"
    assert ch3[0].title == "站在新的历史起点上推进改革发展稳定工作"  # the wrapped row is joined
    assert ch3[1].title == "在法治中国建设中推进改革发展稳定中的群众工作"
    assert ch3[0].heading == "第一节 站在新的历史起点上推进改革发展稳定工作"


def test_toc_row_split_over_two_lines_is_joined() -> None:
    text = "目 录\n第一章\t总论 ·····\t001\n\t第一节 站在新的历史起点上推进改革发展\n稳定工作·····\t053\n后 记·····\t207"
    toc = parse_toc(text)
    assert [(e.number, e.title, e.page) for e in toc] == [
        ("第一章", "总论", "1"), ("第一节", "站在新的历史起点上推进改革发展稳定工作", "53"), ("", "后记", "207")]
    zones, body = find_front_matter((text + "\n\n第一章\n总论\n正文。").split("\n"))
    assert zones[0].name == "目录" and zones[0].end == 5 and body == 5


def test_copyright_fields_as_printed(lines: list[str]) -> None:
    info = parse_copyright(_zone_text(lines, "版权页"), "book.txt")
    f = info.fields
    assert f["ISBN"] == "978-7-5099-0560-9"
    assert f["定价"] == "33.00 元"
    assert f["主编"] == "李景田"
    assert f["书名"] == "做好新形势下的群众工作"
    assert f["丛书名"] == "全国干部学习培训教材"
    assert f["编写单位"] == "全国干部培训教材编审指导委员会"
    assert f["出版社"] == "党建读物出版社、人民出版社"
    assert (f["出版时间"], f["版次"], f["印刷时间"], f["印次"]) == ("2015 年 2 月", "第 1 版", "2015 年 2 月", "第 1 次印刷")
    assert (f["开本"], f["印张"], f["字数"], f["印数"]) == ("710 毫米 × 1000 毫米 1/16", "14", "156 千字", "1-300000 册")
    assert (f["责任编辑"], f["封面设计"], f["版式设计"], f["责任校对"]) == ("杜念峰", "石笑梦", "周方亚", "张学民")
    assert f["CIP 数据核字号"] == "（2014）第 221435 号"
    assert f["印刷单位"] == "北京尚唐印刷包装有限公司"
    assert f["经销"] == "新华书店"
    assert info.source == "book.txt" and info.page == "版权页"


def test_copyright_of_another_layout() -> None:
    text = "主编：王五  副主编：赵六\n开本：787×1092 1/32\n定价：25.00元\nISBN 978-7-01-012345-6\n2020年5月第2版 2021年3月第3次印刷"
    f = parse_copyright(text, "x.md").fields
    assert (f["主编"], f["副主编"], f["开本"], f["定价"]) == ("王五", "赵六", "787×1092 1/32", "25.00元")
    assert (f["ISBN"], f["版次"], f["印次"], f["印刷时间"]) == ("978-7-01-012345-6", "第2版", "第3次印刷", "2021年3月")


def test_no_front_matter_in_plain_text() -> None:
    assert find_front_matter(["第一章 总论", "正文。"]) == ([], 0)
    assert parse_toc("") == ()
    assert parse_copyright("", Path("x").name).fields == {}


def test_anchor_page_is_the_toc_page_of_the_first_body_heading() -> None:
    toc = parse_toc("目 录\n前 言·····\t001\n第一章\t总论 ·····\t005\n\t第一节 概念·····\t005\n第二章\t方法·····\t020")
    assert anchor_page(toc, "第一章 总论") == "5"
    assert anchor_page(toc, "第二章 方法") == "20"
    assert anchor_page(toc, "") == "5"  # no heading known: the first chapter, not the 前言 row
    assert anchor_page((), "第一章 总论") is None
