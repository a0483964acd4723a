#!/usr/bin/env python3
"""Writes the DMARC aggregate report corpus of tests/dmarc.rs into this folder, deterministically:
reports in the shapes Google, Microsoft and Yahoo send them (RFC 7489 appendix C XML, in a zip or
gzip attachment named as section 7.2.1.1 says), one with a plain XML attachment, bare report files
as `gazette bounces import` may be given them, and malformed ones. Run it from anywhere:

    python3 tests/dmarc/make.py [FOLDER]    # FOLDER: where to write, this one by default

The rows of each report are the ones tests/dmarc.rs adds up on its own (`REPORTS` there).
"""

import base64
import gzip
import io
import os
import sys
import zipfile

HERE = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
DOMAIN = "signals.example.org"
DAY1 = 1764547200  # 2025-12-01T00:00:00Z
DAY2 = DAY1 + 86400


def feedback(org, email, report_id, begin, end, rows, namespaced=False, extra_contact=None):
    """The XML of one aggregate report (RFC 7489 appendix C); rows are
    (source_ip, count, disposition, dkim, spf)."""
    root = (
        '<feedback xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        if namespaced
        else "<feedback>"
    )
    out = ['<?xml version="1.0" encoding="UTF-8" ?>', root, "  <version>1.0</version>", "  <report_metadata>"]
    out += [f"    <org_name>{org}</org_name>", f"    <email>{email}</email>"]
    if extra_contact:
        out.append(f"    <extra_contact_info>{extra_contact}</extra_contact_info>")
    out += [
        f"    <report_id>{report_id}</report_id>",
        f"    <date_range>\n      <begin>{begin}</begin>\n      <end>{end}</end>\n    </date_range>",
        "  </report_metadata>",
        "  <policy_published>",
        f"    <domain>{DOMAIN}</domain>\n    <adkim>r</adkim>\n    <aspf>r</aspf>\n    <p>quarantine</p>\n    <sp>quarantine</sp>\n    <pct>100</pct>",
        "  </policy_published>",
    ]
    for ip, count, disposition, dkim, spf in rows:
        dkim_result = "pass" if dkim == "pass" else "fail"
        spf_domain = "bounces." + DOMAIN if spf == "pass" else "mail.unknown-sender.example"
        spf_result = "pass" if spf == "pass" else "softfail"
        out += [
            "  <record>",
            "    <row>",
            f"      <source_ip>{ip}</source_ip>",
            f"      <count>{count}</count>",
            "      <policy_evaluated>",
            f"        <disposition>{disposition}</disposition>\n        <dkim>{dkim}</dkim>\n        <spf>{spf}</spf>",
            "      </policy_evaluated>",
            "    </row>",
            "    <identifiers>",
            f"      <envelope_from>{spf_domain}</envelope_from>\n      <header_from>{DOMAIN}</header_from>",
            "    </identifiers>",
            "    <auth_results>",
            f"      <dkim>\n        <domain>{DOMAIN}</domain>\n        <selector>gazette</selector>\n        <result>{dkim_result}</result>\n      </dkim>",
            f"      <spf>\n        <domain>{spf_domain}</domain>\n        <scope>mfrom</scope>\n        <result>{spf_result}</result>\n      </spf>",
            "    </auth_results>",
            "  </record>",
        ]
    out.append("</feedback>")
    return ("\n".join(out) + "\n").encode()


def zipped(name, data):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo(name, date_time=(2025, 12, 2, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        z.writestr(info, data)
    return buf.getvalue()


def gzipped(data):
    return gzip.compress(data, compresslevel=9, mtime=0)


def b64(data):
    text = base64.b64encode(data).decode()
    return "\r\n".join(text[i : i + 76] for i in range(0, len(text), 76))


def headers(sender, subject, message_id, date):
    return (
        f"Return-Path: <{sender}>\r\nFrom: {sender}\r\nTo: bounces@{DOMAIN}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{message_id}>\r\nDate: {date}\r\nMIME-Version: 1.0\r\n"
    )


def single_part(head, content_type, name, data):
    """Google's shape: the whole message is the attachment."""
    return (
        f'{head}Content-Type: {content_type}; name="{name}"\r\nContent-Disposition: attachment; filename="{name}"\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\n{b64(data)}\r\n"
    ).encode()


def with_attachment(head, text, content_type, name, data, boundary="=_report_0"):
    """Microsoft's and Yahoo's shape: a few words, then the attachment."""
    return (
        f'{head}Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n{text}\r\n\r\n"
        f'--{boundary}\r\nContent-Type: {content_type}; name="{name}"\r\nContent-Disposition: attachment; filename="{name}"\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\n{b64(data)}\r\n--{boundary}--\r\n"
    ).encode()


def write(name, data):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)


# The rows of each report: (source_ip, count, disposition, dkim, spf), as tests/dmarc.rs knows them.
GOOGLE_ROWS = [
    ("192.0.2.10", 1200, "none", "pass", "pass"),
    ("192.0.2.11", 300, "none", "pass", "fail"),
    ("198.51.100.23", 4, "quarantine", "fail", "fail"),
]
MICROSOFT_ROWS = [
    ("192.0.2.10", 640, "none", "pass", "pass"),
    ("203.0.113.5", 12, "quarantine", "fail", "fail"),
]
YAHOO_ROWS = [
    ("192.0.2.10", 415, "none", "pass", "pass"),
    ("192.0.2.11", 20, "none", "fail", "pass"),
]
PLAIN_ROWS = [
    ("2001:db8::25", 3, "quarantine", "fail", "fail"),
    ("192.0.2.10", 50, "none", "pass", "pass"),
]


def main():
    # Google: a zip as the whole message, from noreply-dmarc-support@google.com.
    google_name = f"google.com!{DOMAIN}!{DAY1}!{DAY1 + 86399}"
    google_xml = feedback(
        "google.com", "noreply-dmarc-support@google.com", "4911385738172693081", DAY1, DAY1 + 86399, GOOGLE_ROWS,
        extra_contact="https://support.google.com/a/answer/2466580",
    )
    google_zip = zipped(google_name + ".xml", google_xml)
    google_head = headers(
        "noreply-dmarc-support@google.com",
        f"Report domain: {DOMAIN} Submitter: google.com Report-ID: 4911385738172693081",
        "4911385738172693081@google.com",
        "Tue, 02 Dec 2025 08:59:59 -0800",
    )
    write("google.eml", single_part(google_head, "application/zip", google_name + ".zip", google_zip))
    # The same report's attachment saved on its own: a duplicate of google.eml.
    write(google_name + ".zip", google_zip)

    # Microsoft (Outlook.com): a gzip attachment after a line of text.
    ms_name = f"enterprise.protection.outlook.com!{DOMAIN}!{DAY1}!{DAY1 + 86400}"
    ms_xml = feedback(
        "Enterprise Outlook", "dmarcreport@microsoft.com", "f6a9c0e2b1d54f3a8e7c2d1b0a9f8e7d", DAY1, DAY1 + 86400,
        MICROSOFT_ROWS, namespaced=True,
    )
    ms_head = headers(
        "dmarcreport@microsoft.com",
        f"Report Domain: {DOMAIN} Submitter: enterprise.protection.outlook.com Report-ID: <f6a9c0e2b1d54f3a8e7c2d1b0a9f8e7d>",
        "f6a9c0e2b1d54f3a8e7c2d1b0a9f8e7d@enterprise.protection.outlook.com",
        "Wed, 03 Dec 2025 01:12:44 +0000",
    )
    # The same report saved on its own, gzipped: a duplicate of microsoft.eml.
    write(ms_name + ".xml.gz", gzipped(ms_xml))
    write(
        "microsoft.eml",
        with_attachment(ms_head, "This is a DMARC aggregate report from Microsoft Corporation.", "application/gzip",
                        ms_name + ".xml.gz", gzipped(ms_xml)),
    )

    # Yahoo: a gzip attachment, from dmarchelp@yahooinc.com.
    yahoo_name = f"yahoo.com!{DOMAIN}!{DAY2}!{DAY2 + 86399}"
    yahoo_xml = feedback("Yahoo", "dmarchelp@yahooinc.com", "1764633600.417291", DAY2, DAY2 + 86399, YAHOO_ROWS)
    yahoo_head = headers(
        "dmarchelp@yahooinc.com",
        f"Report Domain: {DOMAIN} Submitter: yahoo.com Report-ID: <1764633600.417291>",
        "1764633600.417291@dmarc.yahoo.com",
        "Wed, 03 Dec 2025 04:00:00 +0000",
    )
    write("yahoo.eml", with_attachment(yahoo_head, "Attached is the DMARC aggregate report.", "application/gzip",
                                       yahoo_name + ".xml.gz", gzipped(yahoo_xml)))

    # A smaller receiver's: plain XML, attached as text, and the same XML as a bare file given to import.
    plain_name = f"mail.example.net!{DOMAIN}!{DAY2}!{DAY2 + 86399}"
    plain_xml = feedback("mail.example.net", "dmarc@mail.example.net", "mx1-20251202-1", DAY2, DAY2 + 86399, PLAIN_ROWS)
    plain_head = headers(
        "dmarc@mail.example.net",
        f"Report Domain: {DOMAIN} Submitter: mail.example.net Report-ID: <mx1-20251202-1>",
        "mx1-20251202-1@mail.example.net",
        "Wed, 03 Dec 2025 00:30:00 +0000",
    )
    write("plain-xml.eml", with_attachment(plain_head, "DMARC aggregate report.", "text/xml", plain_name + ".xml", plain_xml))
    write(plain_name + ".xml", plain_xml)

    # Malformed: each is named as a report, and none can be read.
    bad = "malformed"
    os.makedirs(os.path.join(HERE, bad), exist_ok=True)
    trunc_name = f"google.com!{DOMAIN}!{DAY2}!{DAY2 + 86399}.zip"
    truncated = zipped(trunc_name[:-4] + ".xml", feedback("google.com", "x@google.com", "trunc-1", DAY2, DAY2 + 86399, GOOGLE_ROWS))
    head = headers("noreply-dmarc-support@google.com", f"Report domain: {DOMAIN} Submitter: google.com Report-ID: trunc-1",
                   "trunc-1@google.com", "Wed, 03 Dec 2025 08:59:59 -0800")
    write(f"{bad}/truncated-zip.eml", single_part(head, "application/zip", trunc_name, truncated[: len(truncated) // 2]))

    atom = b'<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom"><title>Not a report</title></feed>\n'
    head = headers("dmarc@mail.example.net", f"Report Domain: {DOMAIN} Submitter: mail.example.net Report-ID: <atom-1>",
                   "atom-1@mail.example.net", "Wed, 03 Dec 2025 00:30:00 +0000")
    write(f"{bad}/not-feedback.eml", with_attachment(head, "Report.", "text/xml", plain_name + ".xml", atom))

    no_policy = feedback("Yahoo", "dmarchelp@yahooinc.com", "nopolicy-1", DAY2, DAY2 + 86399, YAHOO_ROWS)
    start = no_policy.index(b"  <policy_published>")
    end = no_policy.index(b"</policy_published>\n") + len(b"</policy_published>\n")
    no_policy = no_policy[:start] + no_policy[end:]
    head = headers("dmarchelp@yahooinc.com", f"Report Domain: {DOMAIN} Submitter: yahoo.com Report-ID: <nopolicy-1>",
                   "nopolicy-1@dmarc.yahoo.com", "Wed, 03 Dec 2025 04:00:00 +0000")
    write(f"{bad}/wrong-schema.eml", with_attachment(head, "Report.", "application/gzip", yahoo_name + ".xml.gz", gzipped(no_policy)))

    # 24 MB of spaces before the XML: 24 KB compressed, over the 20 MB Gazette uncompresses.
    bomb = b" " * (24 * 1024 * 1024) + feedback("Enterprise Outlook", "dmarcreport@microsoft.com", "bomb-1", DAY2, DAY2 + 86400, MICROSOFT_ROWS)
    head = headers("dmarcreport@microsoft.com", f"Report Domain: {DOMAIN} Submitter: enterprise.protection.outlook.com Report-ID: <bomb-1>",
                   "bomb-1@enterprise.protection.outlook.com", "Wed, 03 Dec 2025 01:12:44 +0000")
    write(f"{bad}/gzip-bomb.eml", with_attachment(head, "Report.", "application/gzip", ms_name + ".xml.gz", gzipped(bomb)))

    write(f"{bad}/truncated.xml.gz", gzipped(yahoo_xml)[:200])


if __name__ == "__main__":
    main()
