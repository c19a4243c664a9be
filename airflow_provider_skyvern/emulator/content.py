"""What an emulated run produces: output shaped after ``data_extraction_schema``, and real artifact files.

Everything is derived from the run id (seeded), so the same run always yields the same output and bytes.
"""

from __future__ import annotations

import csv
import io
import json
import random
import struct
import zlib
from typing import Any

MAX_ARRAY_ITEMS = 10
DEFAULT_ARRAY_ITEMS = 3


def sample_output(schema: Any, prompt: str, seed: str) -> Any:
    """A value valid against ``schema`` (a JSON Schema dict or JSON string), or a short answer without one."""
    if isinstance(schema, str):
        try:
            schema = json.loads(schema)
        except ValueError:
            schema = None
    rng = random.Random(seed)  # noqa: S311 - test data, not security
    if not isinstance(schema, dict):
        return {"answer": f"Emulated answer to: {prompt[:200]}"}
    return _sample(schema, schema, rng, "item", 0)


def _sample(schema: Any, root: dict[str, Any], rng: random.Random, name: str, index: int) -> Any:
    if not isinstance(schema, dict):
        return f"emulated {name}"
    if "$ref" in schema:
        return _sample(_resolve(schema["$ref"], root), root, rng, name, index)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][index % len(schema["enum"])]
    for combinator in ("anyOf", "oneOf", "allOf"):
        options = [
            s for s in schema.get(combinator, []) if not (isinstance(s, dict) and s.get("type") == "null")
        ]
        if options:
            return _sample(options[0], root, rng, name, index)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        properties = schema.get("properties", {})
        return {key: _sample(sub, root, rng, key, index) for key, sub in properties.items()}
    if kind == "array":
        low = int(schema.get("minItems", 0))
        high = int(schema.get("maxItems", MAX_ARRAY_ITEMS))
        count = min(max(DEFAULT_ARRAY_ITEMS, low), high)
        return [_sample(schema.get("items", {}), root, rng, name, i) for i in range(count)]
    if kind in ("number", "integer"):
        return _number(schema, rng, name, integer=kind == "integer")
    if kind == "boolean":
        return index % 2 == 0
    if kind == "null":
        return None
    return _string(schema, rng, name, index)


def _resolve(ref: str, root: dict[str, Any]) -> Any:
    node: Any = root
    for part in ref.removeprefix("#/").split("/") if ref.startswith("#/") else []:
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return node


def _number(schema: dict[str, Any], rng: random.Random, name: str, *, integer: bool) -> float | int:
    lowered = name.lower()
    low, high = (1.0, 5.0) if "rating" in lowered or "star" in lowered else (5.0, 500.0)
    low = float(schema.get("minimum", schema.get("exclusiveMinimum", low)))
    high = float(schema.get("maximum", schema.get("exclusiveMaximum", max(high, low + 1))))
    if integer:
        return rng.randint(int(low) + 1, max(int(high) - 1, int(low) + 1))
    digits = 1 if "rating" in lowered else 2
    return round(rng.uniform(low + 0.01, high - 0.01), digits)


def _string(schema: dict[str, Any], rng: random.Random, name: str, index: int) -> str:
    lowered, fmt = name.lower(), schema.get("format")
    if fmt == "date" or lowered.endswith("date"):
        return f"2026-11-{1 + index % 28:02d}"
    if fmt == "date-time":
        return f"2026-11-{1 + index % 28:02d}T12:00:00Z"
    if fmt in ("uri", "url") or "url" in lowered or "link" in lowered:
        return f"https://example.com/emulated/{name}/{index + 1}"
    if fmt == "email" or "email" in lowered:
        return f"user{index + 1}@example.com"
    if "price" in lowered or "amount" in lowered or "total" in lowered:
        return f"${rng.uniform(5, 500):.2f}"
    text = f"Emulated {name.replace('_', ' ')} {chr(ord('A') + index % 26)}"
    max_length = schema.get("maxLength")
    return text[: int(max_length)] if max_length else text


# ---- files ----------------------------------------------------------------------------------------------


def screenshot_png(seed: str, width: int = 320, height: int = 200) -> bytes:
    """A real PNG: a gradient whose colour depends on the run, so screenshots differ between runs."""
    rng = random.Random(seed)  # noqa: S311
    red, green, blue = (rng.randint(40, 215) for _ in range(3))
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter: none
        shade = y * 40 // height
        rows += bytes((min(red + shade, 255), min(green + shade, 255), min(blue + shade, 255))) * width

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(rows)))
        + chunk(b"IEND", b"")
    )


def recording_webm() -> bytes:
    """A real (frameless) WebM container: EBML header plus a Segment with its Info."""

    def element(element_id: int, data: bytes) -> bytes:
        size = len(data)
        encoded = bytes([0x80 | size]) if size < 0x7F else struct.pack(">H", 0x4000 | size)
        return element_id.to_bytes((element_id.bit_length() + 7) // 8, "big") + encoded + data

    header = element(
        0x1A45DFA3,
        element(0x4286, b"\x01")
        + element(0x42F7, b"\x01")
        + element(0x42F2, b"\x04")
        + element(0x42F3, b"\x08")
        + element(0x4282, b"webm")
        + element(0x4287, b"\x02")
        + element(0x4285, b"\x02"),
    )
    info = element(
        0x1549A966,
        element(0x2AD7B1, struct.pack(">I", 1_000_000))
        + element(0x4D80, b"skyvern-emulator")
        + element(0x5741, b"skyvern-emulator"),
    )
    return header + element(0x18538067, info)


def output_csv(output: Any) -> bytes:
    """The run's output as CSV: one row per item (a list) or one row (an object)."""
    rows = output if isinstance(output, list) else [output]
    records = [row if isinstance(row, dict) else {"value": row} for row in rows]
    columns = list(dict.fromkeys(key for record in records for key in record))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns or ["value"])
    writer.writeheader()
    for record in records:
        writer.writerow(
            {key: json.dumps(v) if isinstance(v, (dict, list)) else v for key, v in record.items()}
        )
    return buffer.getvalue().encode()


def invoice_pdf(run_id: str) -> bytes:
    """A real one-page PDF, for prompts that download an invoice."""
    text = f"Emulated invoice for Skyvern run {run_id}".replace("(", "[").replace(")", "]")
    stream = f"BT /F1 18 Tf 72 720 Td ({text}) Tj ET".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    body, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(body))
        body += b"%d 0 obj\n" % number + obj + b"\nendobj\n"
    xref = len(body)
    body += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    body += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    body += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(body)
