#!/usr/bin/env python3
"""Regenerates tests/fuzz/corpus/tzif: the seeds of fuzz_tzif and the case
files of tzif_diff (which also reads all of /usr/share/zoneinfo).

- real zone files of Debian's tzdata (2025b), small ones chosen for what
  they exercise: no transitions and a plain footer (Etc/UTC, Etc/GMT+5), a
  footer with DST rules (Europe/Berlin), half-hour and 45-minute offsets
  (Asia/Kolkata, Pacific/Chatham), a 30-minute DST on the southern
  hemisphere (Australia/Lord_Howe), negative DST (Europe/Dublin: winter is
  the DST period), version 3 rules with hours beyond 24 and negative times
  (Asia/Jerusalem, America/Nuuk), a zone whose rules ended
  (America/Sao_Paulo), leap-second records (right/UTC);
- crafted files: version 1 (the first block of a real file), version 1 with
  a footer, footer-only zones (no transitions: the rule decides every
  instant) in every rule form (Mm.w.d, Jn, n, default rules, <+hh:mm>
  names), extreme offsets (-2^31, 2^31-1, minus 30 s), an empty name;
- damaged variants: truncated at each section, other version bytes, a
  second header without its magic (Go reads it), name and type indexes out
  of range, no types, transitions out of order or repeated (rootseal
  refuses those, Go reads them), malformed footers, counts beyond the data.
Run from the checkout root: python3 tests/fuzz/seeds/tzif_seeds.py
"""
import os
import shutil
import struct

OUT = "tests/fuzz/corpus/tzif"
ZONEINFO = "/usr/share/zoneinfo"

REAL = {
    "utc": "Etc/UTC",
    "gmt_plus5": "Etc/GMT+5",
    "berlin": "Europe/Berlin",
    "kolkata": "Asia/Kolkata",
    "chatham": "Pacific/Chatham",
    "lord_howe": "Australia/Lord_Howe",
    "dublin": "Europe/Dublin",
    "jerusalem": "Asia/Jerusalem",
    "nuuk": "America/Nuuk",
    "sao_paulo": "America/Sao_Paulo",
    "right_utc": "right/UTC",
}


def block(times, idxs, types, chars, leaps=(), isstd=b"", isut=b"", wide=True):
    """The counts and data of one TZif block (version 1's or the 64-bit one)."""
    fmt = ">q" if wide else ">i"
    counts = struct.pack(">6I", len(isut), len(isstd), len(leaps), len(times), len(types), len(chars))
    data = b"".join(struct.pack(fmt, t) for t in times)
    data += bytes(idxs)
    data += b"".join(struct.pack(">iBB", off, dst, ai) for off, dst, ai in types)
    data += chars
    data += b"".join(struct.pack(fmt + "i", t, c) for t, c in leaps)
    return counts, data + isstd + isut


def tzif(times, idxs, types, chars, footer=None, version=b"2", leaps=()):
    if version == b"\0":
        counts, data = block(times, idxs, types, chars, leaps, wide=False)
        out = b"TZif" + version + b"\0" * 15 + counts + data
        if footer is not None:
            out += b"\n" + footer + b"\n"
        return out
    narrow = [(t, i) for t, i in zip(times, idxs) if -(2**31) <= t < 2**31]
    c1, d1 = block([t for t, _ in narrow], [i for _, i in narrow], types, chars,
                   [(t, c) for t, c in leaps if -(2**31) <= t < 2**31], wide=False)
    c2, d2 = block(times, idxs, types, chars, leaps, wide=True)
    head = b"TZif" + version + b"\0" * 15
    return head + c1 + d1 + head + c2 + d2 + b"\n" + (footer or b"") + b"\n"


def sections(data):
    """Offsets where each section of the 64-bit block of a version 2+ file starts."""
    n = struct.unpack(">6I", data[20:44])
    at = 44 + n[3] * 5 + n[4] * 6 + n[5] + n[2] * 8 + n[1] + n[0]
    n2 = struct.unpack(">6I", data[at + 20:at + 44])
    tx = at + 44
    idx = tx + n2[3] * 8
    types = idx + n2[3]
    chars = types + n2[4] * 6
    leaps = chars + n2[5]
    end = leaps + n2[2] * 12 + n2[1] + n2[0]
    return {"v1": 44, "header2": at, "tx": tx, "idx": idx, "types": types, "chars": chars, "end": end}, n2


def v1_of(data):
    """The version 1 part of a real file, as a version 1 file."""
    n = struct.unpack(">6I", data[20:44])
    size = 44 + n[3] * 5 + n[4] * 6 + n[5] + n[2] * 8 + n[1] + n[0]
    return data[:4] + b"\0" + data[5:size]


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    files = {}
    for name, zone in REAL.items():
        with open(os.path.join(ZONEINFO, zone), "rb") as f:
            files["real_" + name] = f.read()
    berlin = files["real_berlin"]
    lord_howe = files["real_lord_howe"]

    # Crafted.
    files["v1_berlin"] = v1_of(berlin)
    files["v1_kolkata"] = v1_of(files["real_kolkata"])
    files["v1_with_footer"] = v1_of(berlin) + b"\nCET-1CEST,M3.5.0,M10.5.0/3\n"
    one_type = [(0, 0, 0)]
    for name, footer in {
        "footer_only_us": b"EST5EDT,M3.2.0,M11.1.0",
        "footer_only_default_rules": b"EST5EDT",
        "footer_only_south": b"<+1030>-10:30<+11>-11,M10.1.0,M4.1.0",
        "footer_only_negative_dst": b"IST-1GMT0,M10.5.0,M3.5.0/1",
        "footer_only_julian": b"AAA3BBB,J60/2,J300/3",
        "footer_only_doy": b"AAA-3BBB-4,59/25,300/-2",
        "footer_only_v3_hours": b"<-02>2<-01>,M3.5.0/-1,M10.5.0/0",
        "footer_only_week5": b"XST-9:30XDT-10:30:15,M2.5.6/167,M12.5.0/-167",
        "footer_only_std": b"<+0545>-5:45",
        "footer_only_dst_always": b"AAA0BBB,0/0,J365/25",
    }.items():
        files[name] = tzif([], [], one_type, b"LMT\0", footer=footer)
    files["footer_only_v3"] = tzif([], [], one_type, b"LMT\0", footer=b"IST-2IDT,M3.4.4/26,M10.5.0", version=b"3")
    files["extreme_offsets"] = tzif(
        [-(2**40), -1000, 0, 1000, 2**33],
        [0, 1, 2, 3, 0],
        [(-(2**31), 0, 0), (2**31 - 1, 1, 4), (-30, 0, 8), (0, 1, 9), (59, 0, 0)],
        b"MIN\0MAX\0\0NEG\0",
        footer=b"<-00:00:30>0:0:30",
    )
    files["empty_names"] = tzif([0, 86400], [0, 1], [(3600, 0, 0), (-3600, 1, 0)], b"\0")
    files["no_footer_newline"] = tzif([0], [0], one_type, b"UTC\0")[:-1]
    files["leap_seconds"] = tzif([78796800], [0], one_type, b"UTC\0", leaps=[(78796800, 1), (94694401, 2)])

    # Damaged variants of real files.
    at, n2 = sections(berlin)
    for sec, off in at.items():
        files["trunc_berlin_" + sec] = berlin[:off]
        files["trunc_berlin_" + sec + "_plus3"] = berlin[: off + 3]
    files["trunc_berlin_header"] = berlin[:30]
    files["trunc_lord_howe_footer"] = lord_howe[:-5]
    for v in (b"1", b"4", b"\xff", b"A"):
        files["version_" + v.hex()] = berlin[:4] + v + berlin[5:]
    files["v1_as_v2"] = berlin[:4] + b"2" + v1_of(berlin)[5:]
    h2 = at["header2"]
    files["second_magic_damaged"] = berlin[:h2] + b"XXXX" + berlin[h2 + 4:]
    files["second_version_damaged"] = berlin[:h2 + 4] + b"\0" + berlin[h2 + 5:]
    files["abbr_index_out_of_range"] = berlin[: at["types"] + 5] + b"\xff" + berlin[at["types"] + 6:]
    files["type_index_out_of_range"] = berlin[: at["idx"] + 3] + b"\x40" + berlin[at["idx"] + 4:]
    no_types = bytearray(berlin)
    no_types[h2 + 36:h2 + 40] = b"\0\0\0\0"
    files["no_types"] = bytes(no_types)
    swapped = bytearray(berlin)
    t3, t4 = at["tx"] + 3 * 8, at["tx"] + 4 * 8
    swapped[t3:t3 + 8], swapped[t4:t4 + 8] = berlin[t4:t4 + 8], berlin[t3:t3 + 8]
    files["transitions_swapped"] = bytes(swapped)
    repeated = bytearray(berlin)
    repeated[t4:t4 + 8] = berlin[t3:t3 + 8]
    files["transitions_repeated"] = bytes(repeated)
    files["transitions_descending"] = tzif([1000, 0], [0, 1], [(0, 0, 0), (3600, 1, 0)], b"UTC\0")
    big_count = bytearray(berlin)
    big_count[h2 + 32:h2 + 36] = b"\xff\xff\xff\xff"
    files["count_beyond_data"] = bytes(big_count)
    body = berlin[: berlin.rindex(b"\n", 0, len(berlin) - 1)]
    for name, footer in {
        "footer_unclosed_bracket": b"<+0530-5:30",
        "footer_short_name": b"AB1",
        "footer_bad_rule": b"CET-1CEST,M13.5.0,M10.5.0",
        "footer_missing_end_rule": b"CET-1CEST,M3.5.0",
        "footer_trailing": b"CET-1CEST,M3.5.0,M10.5.0/3x",
        "footer_offset_too_big": b"CET-169CEST",
        "footer_semicolon": b"CET-1CEST;M3.5.0,M10.5.0/3",
        "footer_empty": b"",
        "footer_newlines": b"CET-1\nCEST",
    }.items():
        files[name] = body + b"\n" + footer + b"\n"

    for name, data in sorted(files.items()):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print(f"{len(files)} seeds in {OUT}")


if __name__ == "__main__":
    main()
