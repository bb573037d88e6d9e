"""Checks what `ckpt show` prints, as an outside tool reads it.

  show_output_check.py images CKPT DIR N   the images make_hostile_images wrote
  show_output_check.py dumped CKPT IMAGE HEX  a dumped task's comm is HEX
  show_output_check.py document FILE [error]  FILE is a strict JSON document
                                              (with an "error" member)

The JSON must parse strictly (plain ASCII, no NaN, no fractions, no
duplicate keys, integers within 64 bits) and give back the image's bytes as
docs/image-format.md says: each character of a string is one byte. The text
must hold only printable ASCII and newlines, one line a record.
"""

import json
import subprocess
import sys


def strict_json(data):
    def reject_constant(name):
        raise ValueError(f"not JSON: {name}")

    def reject_float(text):
        raise ValueError(f"a number that is not an integer: {text}")

    def unique_keys(pairs):
        keys = [k for k, _ in pairs]
        dups = {k for k in keys if keys.count(k) > 1}
        if dups:
            raise ValueError(f"duplicate keys {sorted(dups)}")
        return dict(pairs)

    doc = json.loads(data.decode("ascii"), parse_constant=reject_constant,
                     parse_float=reject_float, object_pairs_hook=unique_keys)
    check_integers(doc)
    return doc


def check_integers(value):
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        assert -(2**63) <= value < 2**64, value
    elif isinstance(value, dict):
        for v in value.values():
            check_integers(v)
    elif isinstance(value, list):
        for v in value:
            check_integers(v)


def image_bytes(string):
    """The documented decoding: every code point is one byte (U+0000-U+00FF)."""
    return string.encode("latin-1")


def text_escaped(data):
    """How the text output writes bytes: \\xNN for all but printable ASCII, '\\' included."""
    return "".join(chr(b) if 0x20 <= b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in data)


def show(ckpt, image, *flags, stdin=None, want_rc=0):
    args = [ckpt, "show", "--image", image if stdin is None else "-", *flags]
    run = subprocess.run(args, input=stdin, capture_output=True)
    assert run.returncode == want_rc, (args, run.returncode, run.stderr)
    return run.stdout


def check_text(out, nr_records):
    bad = sorted({b for b in out if not (0x20 <= b < 0x7F or b == 0x0A)})
    assert not bad, f"text output holds raw bytes {bad}"
    lines = out.decode("ascii").split("\n")
    assert lines[-1] == "" and len(lines) - 1 == nr_records, (len(lines) - 1, nr_records)
    return lines[:-1]


def read_expect(path):
    expect = []
    with open(path) as f:
        for line in f:
            kind, index, *rest = line.rstrip("\n").split(" ")
            expect.append((kind, int(index), rest))
    return expect


def check_image(ckpt, image, expect_path):
    doc = strict_json(show(ckpt, image, "--json"))
    assert "error" not in doc, doc["error"]
    recs = doc["records"]
    assert [r["index"] for r in recs] == list(range(len(recs)))
    lines = check_text(show(ckpt, image), len(recs))
    checked = 0
    for kind, index, rest in read_expect(expect_path):
        fields, line = recs[index]["fields"], lines[index]
        if kind == "type":
            assert recs[index]["type"] == rest[0], (index, recs[index]["type"], rest)
            continue
        name = rest[0]
        assert name in fields, (index, name, fields)
        value = fields[name]
        if kind == "number":
            assert value == int(rest[1]) and type(value) is int, (index, name, value, rest)
        elif kind == "absent":
            assert value is None, (index, name, value)
        elif kind == "chars":
            size, want = int(rest[1]), bytes.fromhex(rest[2])
            got = image_bytes(value)
            assert len(got) <= size and not got.endswith(b"\0"), (index, name, got)
            assert got + b"\0" * (size - len(got)) == want, (index, name, got, want)
            assert f" {name}={text_escaped(got)}" in line, (index, name, line)
        elif kind == "bytes":
            want = bytes.fromhex(rest[1])
            assert image_bytes(value) == want, (index, name, value, want)
            assert f" {name}={text_escaped(want)}" in line, (index, name, line)
        else:
            raise AssertionError(f"unknown expectation {kind}")
        checked += 1
    assert checked > 0
    return doc


def check_images(ckpt, directory, count):
    types = set()
    for i in range(int(count)):
        image = f"{directory}/{i}.img"
        doc = check_image(ckpt, image, f"{directory}/{i}.expect")
        types |= {r["type"] for r in doc["records"]}
        if i == 0:
            # Cut short: the records before the cut, a whole document, and why.
            with open(image, "rb") as f:
                data = f.read()
            cut = strict_json(show(ckpt, image, "--json", stdin=data[: len(data) // 2], want_rc=1))
            assert 0 < len(cut["records"]) < len(doc["records"]), len(cut["records"])
            assert "truncated" in cut["error"], cut["error"]
    print(f"{count} images, {len(types)} record types: {' '.join(sorted(types))}")


def check_dumped(ckpt, image, comm_hex):
    want = bytes.fromhex(comm_hex)
    doc = strict_json(show(ckpt, image, "--json"))
    comms = [image_bytes(r["fields"]["comm"]) for r in doc["records"] if r["type"] == "TASK"]
    assert comms == [want], (comms, want)
    lines = check_text(show(ckpt, image), len(doc["records"]))
    assert any(f" comm={text_escaped(want)} " in l for l in lines), lines
    print(f"comm {want!r} comes back from {len(doc['records'])} records")


def check_document(path, want_error=None):
    with open(path, "rb") as f:
        doc = strict_json(f.read())
    assert ("error" in doc) == (want_error == "error"), doc.get("error")


def main():
    mode, *args = sys.argv[1:]
    {"images": check_images, "dumped": check_dumped, "document": check_document}[mode](*args)


if __name__ == "__main__":
    main()
