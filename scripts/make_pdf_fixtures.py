"""Write the third-party PDF fixtures of tests/data/pdf/ with LibreOffice, not with the project's own writer.

    apt-get install -y --no-install-recommends libreoffice-writer fonts-noto-cjk poppler-utils
    .venv/bin/python scripts/make_pdf_fixtures.py          # rewrites tests/data/pdf/*.pdf and source.json

Each book is written as a flat ODF text document (.fodt, plain XML, no odfpy needed) and converted with
`soffice --headless --convert-to pdf`, so the PDFs have the layout a publisher's office suite gives them:
justified lines, a running header (the book title) and a footer with the printed page number, roman front
matter, body numbered from 1, a paragraph running over a page break, a two-column section, and a "scanned"
page that is an image only (a page rendered to PNG with poppler's pdftoppm and placed full-page, no text
layer). The text drawn is written to source.json, the oracle of tests/test_pdf_layouts.py and
bench/pdf_extract.py. CI does not run this script: the PDFs are committed.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from xml.sax.saxutils import escape

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "pdf"
TITLE = "群众工作学习读本"

PREFACE = [
    "本书是为基层干部编写的学习读本，围绕“怎样做好新形势下的群众工作”这一主题，分章讲述群众工作的地位、方法和经验。",
    "编写中，我们参考了《中国共产党章程》和有关文献，力求做到观点准确、文字通俗、便于自学。",
]
TOC = ["第一章　群众工作的地位……………1", "第一节　群众工作的概念……………1",
       "第二节　群众工作的方法……………3", "第二章　群众工作的经验……………5"]
CH1 = "第一章　群众工作的地位"
S1 = "第一节　群众工作的概念"
S1_PARAS = [
    "党的群众工作是党的全部工作的基础，是密切党群关系、干群关系的桥梁和纽带。群众工作做得好不好，直接关系到党的执政基础是否巩固。",
    "做好群众工作，首先要弄清楚什么是群众工作。简单地说，群众工作就是党和政府为了实现人民群众的根本利益而开展的宣传、组织、服务和引导工作；它既包括“为群众办事”，也包括“让群众自己办事”。",
    "新形势下，群众的利益诉求更加多样，群众的民主意识、法治意识和维权意识不断增强，群众工作的对象、内容和方式都发生了深刻变化。干部要适应这些变化，就必须：深入基层，倾听呼声，了解诉求，化解矛盾；坚持从群众中来，到群众中去；把群众满意不满意作为衡量工作的根本标准。",
    "历史经验表明，什么时候党同人民群众的联系紧密，党的事业就兴旺发达；什么时候脱离了群众，党的事业就会遭受挫折。革命战争年代，正是依靠人民群众的拥护和支持，党才能够在艰苦的环境中发展壮大，最终夺取全国政权。改革开放以来，党始终把实现好、维护好、发展好最广大人民的根本利益作为一切工作的出发点和落脚点，群众工作的内涵不断丰富。进入新的发展阶段，基层干部面对的群众工作任务更加繁重，既要解决好群众最关心、最直接、最现实的利益问题，又要善于用群众听得懂、听得进的语言讲清道理，做到以理服人、以情感人。每一位干部都应当牢记，群众路线是党的生命线和根本工作路线，丢掉了它就丢掉了根本。",
    "群众工作的核心是正确处理人民内部矛盾。处理人民内部矛盾，要坚持团结—批评—团结的方法，区分不同情况，采取不同办法，做到具体问题具体分析。",
]
S2 = "第二节　群众工作的方法"
S2_PARAS = [
    "第三页的第一句话写在这里：做群众工作要讲究方法，方法对头才能事半功倍。",
    "常用的方法有四种：一是宣传教育，二是示范引导，三是协商对话，四是服务帮扶。每一种方法都有它适用的场合，干部要因地制宜、灵活运用。",
]
SCAN_PARAS = [
    "这一页是扫描页，只有图像，没有文字层。",
    "扫描页上的文字无法被提取，读者需要查看原书。",
]
CH2 = "第二章　群众工作的经验"
CH2_PARAS = [
    "各地在实践中积累了丰富的群众工作经验，“枫桥经验”就是其中的典型。它的要义是：发动和依靠群众，坚持矛盾不上交，就地化解。",
    "总结这些经验，可以看到一条共同的规律：只有真心实意为群众着想，群众才会真心实意支持我们的工作。",
]

COL_CH = "第三章　基层治理的实践"
COL_INTRO = "本章介绍两个地方的做法，左栏讲城市社区，右栏讲农村村庄，请先读完左栏再读右栏。"
COL_LEFT = [
    "左栏第一段：城市社区人口密集、流动性大，社区干部通过网格化管理，把服务送到每一栋楼、每一户人家。",
    "左栏第二段：社区设立议事会，居民有事好商量，众人的事情由众人商量着办，矛盾化解在萌芽状态。",
    "左栏第三段：志愿服务队伍不断壮大，退休党员发挥余热，成为社区治理的骨干力量。",
]
COL_RIGHT = [
    "右栏第一段：农村村庄地域广阔，村干部坚持“四议两公开”，村里的大事小情都摆到桌面上。",
    "右栏第二段：村民理事会协助村委会调解纠纷，乡贤参与乡村治理，乡风文明明显好转。",
    "右栏第三段：驻村工作队与村民同吃同住同劳动，帮助发展特色产业，群众的腰包鼓了起来。",
]
COL_OUTRO = "两栏之后的这一段又回到通栏排版：城市和农村情况不同，但依靠群众、服务群众的道理是相通的。"
COL_PAGE2 = [
    "本章的第二页继续讲述基层治理。基层是党执政的根基，基层治理的好坏直接影响群众的获得感。",
    "干部要把群众的小事当作自己的大事，用心用情用力解决群众的急难愁盼问题。",
]
COL_PAGE3 = ["本章的第三页是小结：治理有效，群众才能安居乐业。"]

STYLES = f"""
 <office:font-face-decls>
  <style:font-face style:name="Noto Serif CJK SC" svg:font-family="'Noto Serif CJK SC'"/>
 </office:font-face-decls>
 <office:styles>
  <style:default-style style:family="paragraph">
   <style:paragraph-properties fo:line-height="150%"/>
   <style:text-properties style:font-name="Noto Serif CJK SC" style:font-name-asian="Noto Serif CJK SC"
     fo:font-size="10.5pt" style:font-size-asian="10.5pt" fo:language="zh" fo:country="CN"
     style:language-asian="zh" style:country-asian="CN"/>
  </style:default-style>
  <style:style style:name="Body" style:family="paragraph">
   <style:paragraph-properties fo:text-align="justify" fo:text-indent="0.74cm" fo:margin-bottom="0.1cm"/>
  </style:style>
  <style:style style:name="Head1" style:family="paragraph" style:default-outline-level="1">
   <style:paragraph-properties fo:text-align="center" fo:margin-top="0.4cm" fo:margin-bottom="0.4cm"/>
   <style:text-properties fo:font-size="16pt" style:font-size-asian="16pt" fo:font-weight="bold"
     style:font-weight-asian="bold"/>
  </style:style>
  <style:style style:name="Head2" style:family="paragraph" style:default-outline-level="2">
   <style:paragraph-properties fo:text-align="center" fo:margin-top="0.3cm" fo:margin-bottom="0.3cm"/>
   <style:text-properties fo:font-size="13pt" style:font-size-asian="13pt" fo:font-weight="bold"
     style:font-weight-asian="bold"/>
  </style:style>
  <style:style style:name="Toc" style:family="paragraph"/>
  <style:style style:name="Header" style:family="paragraph">
   <style:paragraph-properties fo:text-align="center"/>
   <style:text-properties fo:font-size="9pt" style:font-size-asian="9pt"/>
  </style:style>
  <style:style style:name="Footer" style:family="paragraph">
   <style:paragraph-properties fo:text-align="center"/>
   <style:text-properties fo:font-size="9pt" style:font-size-asian="9pt"/>
  </style:style>
 </office:styles>
 <office:automatic-styles>
  <style:page-layout style:name="PLFront">
   <style:page-layout-properties fo:page-width="14.8cm" fo:page-height="21cm" style:num-format="i"
     fo:margin-top="1.2cm" fo:margin-bottom="1.2cm" fo:margin-left="2cm" fo:margin-right="2cm"/>
   <style:header-style><style:header-footer-properties fo:min-height="0.6cm" fo:margin-bottom="0.4cm"/>
   </style:header-style>
   <style:footer-style><style:header-footer-properties fo:min-height="0.6cm" fo:margin-top="0.4cm"/>
   </style:footer-style>
  </style:page-layout>
  <style:page-layout style:name="PLBody">
   <style:page-layout-properties fo:page-width="14.8cm" fo:page-height="21cm" style:num-format="1"
     fo:margin-top="1.2cm" fo:margin-bottom="1.2cm" fo:margin-left="2cm" fo:margin-right="2cm"/>
   <style:header-style><style:header-footer-properties fo:min-height="0.6cm" fo:margin-bottom="0.4cm"/>
   </style:header-style>
   <style:footer-style><style:header-footer-properties fo:min-height="0.6cm" fo:margin-top="0.4cm"/>
   </style:footer-style>
  </style:page-layout>
  <style:page-layout style:name="PLScan">
   <style:page-layout-properties fo:page-width="14.8cm" fo:page-height="21cm" style:num-format="1"
     fo:margin-top="0cm" fo:margin-bottom="0cm" fo:margin-left="0cm" fo:margin-right="0cm"/>
  </style:page-layout>
  <style:style style:name="FrontStart" style:family="paragraph" style:parent-style-name="Head1"
    style:master-page-name="Front"/>
  <style:style style:name="FrontBreak" style:family="paragraph" style:parent-style-name="Head1">
   <style:paragraph-properties fo:break-before="page"/>
  </style:style>
  <style:style style:name="BodyStart" style:family="paragraph" style:parent-style-name="Head1"
    style:master-page-name="Body"><style:paragraph-properties style:page-number="1"/></style:style>
  <style:style style:name="Head2Break" style:family="paragraph" style:parent-style-name="Head2">
   <style:paragraph-properties fo:break-before="page"/>
  </style:style>
  <style:style style:name="ScanStart" style:family="paragraph" style:master-page-name="Scan">
   <style:paragraph-properties fo:text-indent="0cm" fo:line-height="100%"/>
  </style:style>
  <style:style style:name="BodyAgain" style:family="paragraph" style:parent-style-name="Head1"
    style:master-page-name="Body"/>
  <style:style style:name="Cols" style:family="section">
   <style:section-properties><style:columns fo:column-count="2" fo:column-gap="0.6cm"/></style:section-properties>
  </style:style>
  <style:style style:name="BodyBreak" style:family="paragraph" style:parent-style-name="Body">
   <style:paragraph-properties fo:break-before="page"/>
  </style:style>
 </office:automatic-styles>
 <office:master-styles>
  <style:master-page style:name="Front" style:page-layout-name="PLFront">
   <style:header><text:p text:style-name="Header">{TITLE}</text:p></style:header>
   <style:footer><text:p text:style-name="Footer"><text:page-number text:select-page="current"/></text:p>
   </style:footer>
  </style:master-page>
  <style:master-page style:name="Body" style:page-layout-name="PLBody">
   <style:header><text:p text:style-name="Header">{TITLE}</text:p></style:header>
   <style:footer><text:p text:style-name="Footer"><text:page-number text:select-page="current"/></text:p>
   </style:footer>
  </style:master-page>
  <style:master-page style:name="Scan" style:page-layout-name="PLScan"/>
 </office:master-styles>
"""


def fodt(body: str) -> str:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<office:document xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0"
 xmlns:style="urn:oasis:names:tc:opendocument:xmlns:style:1.0"
 xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0"
 xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0"
 xmlns:fo="urn:oasis:names:tc:opendocument:xmlns:xsl-fo-compatible:1.0"
 xmlns:svg="urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0"
 xmlns:xlink="http://www.w3.org/1999/xlink"
 office:version="1.3" office:mimetype="application/vnd.oasis.opendocument.text">
{STYLES}
 <office:body><office:text>
{body}
 </office:text></office:body>
</office:document>
"""


def p(text: str, style: str = "Body") -> str:
    return f'<text:p text:style-name="{style}">{escape(text)}</text:p>\n'


def h(text: str, style: str, level: int) -> str:
    return f'<text:h text:style-name="{style}" text:outline-level="{level}">{escape(text)}</text:h>\n'


def scan_image(png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (f'<text:p text:style-name="ScanStart"><draw:frame draw:name="scan" text:anchor-type="as-char" '
            f'svg:width="14.7cm" svg:height="20.9cm"><draw:image><office:binary-data>{data}'
            f'</office:binary-data></draw:image></draw:frame></text:p>\n')


def book_body(png: bytes) -> str:
    out = [h("序　言", "FrontStart", 1)] + [p(t) for t in PREFACE]
    out += [h("目　录", "FrontBreak", 1)] + [p(t, "Toc") for t in TOC]
    out += [h(CH1, "BodyStart", 1), h(S1, "Head2", 2)] + [p(t) for t in S1_PARAS]
    out += [h(S2, "Head2Break", 2)] + [p(t) for t in S2_PARAS]
    out += [scan_image(png)]
    out += [h(CH2, "BodyAgain", 1)] + [p(t) for t in CH2_PARAS]
    return "".join(out)


def columns_body() -> str:
    out = [h(COL_CH, "BodyStart", 1), p(COL_INTRO)]
    out += ['<text:section text:style-name="Cols" text:name="TwoColumns">\n']
    out += [p(t) for t in COL_LEFT + COL_RIGHT] + ["</text:section>\n", p(COL_OUTRO)]
    out += [p(COL_PAGE2[0], "BodyBreak"), p(COL_PAGE2[1]), p(COL_PAGE3[0], "BodyBreak")]
    return "".join(out)


def scan_source_body() -> str:
    return "".join([h(CH1, "BodyStart", 1)] + [p(t) for t in SCAN_PARAS])


def convert(xml: str, name: str, work: Path) -> Path:
    src = work / f"{name}.fodt"
    src.write_text(xml, encoding="utf-8")
    subprocess.run(["soffice", "--headless", f"-env:UserInstallation=file://{work}/profile",
                    "--convert-to", "pdf", "--outdir", str(work), str(src)], check=True, capture_output=True)
    return work / f"{name}.pdf"


def render_scan(work: Path) -> bytes:
    """One text page rendered to a greyscale PNG at 60 dpi: what a scanner hands over, without the text."""
    pdf = convert(fodt(scan_source_body()), "scan-source", work)
    subprocess.run(["pdftoppm", "-r", "60", "-gray", "-png", "-singlefile", str(pdf), str(work / "scan")],
                   check=True)
    return (work / "scan.png").read_bytes()


def source() -> dict:
    """What each fixture draws, in reading order, and the printed page labels of its pages."""
    return {
        "title": TITLE,
        "book.pdf": {
            "labels": ["i", "ii", "1", "2", "3", "4", "5"], "scanned": ["4"],
            "paragraphs": ["序　言", *PREFACE, "目　录", *TOC, CH1, S1, *S1_PARAS, S2, *S2_PARAS, CH2, *CH2_PARAS],
            "on_page": {"3": S2_PARAS[0], "5": CH2_PARAS[0], "1": S1_PARAS[0]},
            "across_pages": S1_PARAS[3],
        },
        "columns.pdf": {
            "labels": ["1", "2", "3"], "scanned": [],
            "paragraphs": [COL_CH, COL_INTRO, *COL_LEFT, *COL_RIGHT, COL_OUTRO, *COL_PAGE2, *COL_PAGE3],
            "columns": [COL_LEFT, COL_RIGHT],
        },
    }


def main() -> None:
    if not shutil.which("soffice") or not shutil.which("pdftoppm"):
        raise SystemExit("需要 soffice 和 pdftoppm：apt-get install libreoffice-writer fonts-noto-cjk poppler-utils")
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        png = render_scan(work)
        for name, body in (("book", book_body(png)), ("columns", columns_body())):
            pdf = convert(fodt(body), name, work)
            shutil.copy(pdf, OUT / f"{name}.pdf")
            print(f"{OUT / name}.pdf  {pdf.stat().st_size} bytes")
    (OUT / "source.json").write_text(json.dumps(source(), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
