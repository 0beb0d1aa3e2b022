#!/usr/bin/python3
"""Generate a large synthetic ONNX student without holding it in memory.

The model is a valid, runnable classifier
    input_ids[B,S] -> Gather(embedding) -> [Cast|DequantizeLinear] ->
    ReduceMean(axis 1) -> MatMul(head) -> logits[B,2]
whose embedding table holds almost all of the N parameters.  Protobuf bytes
are written by hand (streaming) because onnx.save needs the whole model in
memory and refuses models over 2 GB.

Usage: gen_model.py OUT.onnx --params 300M [--dtype fp32|fp16|int8]
                    [--external] [--dead-initializer] [--provenance]
"""
import argparse
import os
import struct
import sys

FLOAT, UINT8, INT8, INT64, FLOAT16 = 1, 2, 3, 7, 10
WIDTH = {FLOAT: 4, INT8: 1, FLOAT16: 2}
DIM = 256
BLOCK = 1 << 20


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field, wire):
    return varint(field << 3 | wire)


def ld(field, payload):
    return key(field, 2) + varint(len(payload)) + payload


def vi(field, n):
    return key(field, 0) + varint(n & 0xFFFFFFFFFFFFFFFF)


def s(field, text):
    return ld(field, text.encode())


def attr_int(name, v):
    return s(1, name) + vi(3, v) + vi(20, 2)          # AttributeProto INT


def attr_ints(name, vs):
    return s(1, name) + b"".join(vi(8, v) for v in vs) + vi(20, 7)


def node(op, ins, outs, name, attrs=()):
    b = b"".join(s(1, i) for i in ins) + b"".join(s(2, o) for o in outs)
    b += s(3, name) + s(4, op)
    return b + b"".join(ld(5, a) for a in attrs)


def tensor_head(name, dtype, dims):
    return b"".join(vi(1, d) for d in dims) + vi(2, dtype) + s(8, name)


def small_tensor(name, dtype, dims, raw):
    return tensor_head(name, dtype, dims) + ld(9, raw)


def value_info(name, elem, dims):
    shape = b""
    for d in dims:
        shape += ld(1, s(2, d) if isinstance(d, str) else vi(1, d))
    ttype = vi(1, elem) + ld(2, shape)
    return s(1, name) + ld(2, ld(1, ttype))


def parse_count(text):
    mult = {"K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9}
    t = text.strip().upper()
    return int(float(t[:-1]) * mult[t[-1]]) if t[-1] in mult else int(t)


def finite(raw, dtype):
    """Random bytes as finite floats: the top exponent bit of every float32
    (and float16) cleared, so |x| < 2 and no NaN or Inf reaches the outputs
    (the build refuses a model with non-finite outputs)."""
    width = WIDTH.get(dtype, 1)
    if dtype not in (FLOAT, FLOAT16):
        return raw
    b = bytearray(raw)
    for i in range(width - 1, len(b), width):
        b[i] &= 0xBF
    return bytes(b)


def write_payload(f, nbytes, dtype):
    block = finite(os.urandom(BLOCK), dtype)
    left = nbytes
    while left:
        n = min(left, BLOCK)
        f.write(block[:n])
        left -= n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--params", default="1M")
    ap.add_argument("--dtype", choices=["fp32", "fp16", "int8"], default="fp32")
    ap.add_argument("--external", action="store_true")
    ap.add_argument("--dead-initializer", action="store_true")
    ap.add_argument("--provenance", action="store_true",
                    help="add training provenance metadata and doc strings")
    a = ap.parse_args()
    dtype = {"fp32": FLOAT, "fp16": FLOAT16, "int8": INT8}[a.dtype]
    vocab = max(8, parse_count(a.params) // DIM)
    emb_bytes = vocab * DIM * WIDTH[dtype]

    nodes = [node("Gather", ["emb", "input_ids"], ["g"], "gather", [attr_int("axis", 0)])]
    inits = []
    if dtype == FLOAT16:
        nodes.append(node("Cast", ["g"], ["gf"], "cast", [attr_int("to", FLOAT)]))
    elif dtype == INT8:
        inits.append(small_tensor("scale", FLOAT, [], struct.pack("<f", 0.01)))
        inits.append(small_tensor("zero", INT8, [], b"\0"))
        nodes.append(node("DequantizeLinear", ["g", "scale", "zero"], ["gf"], "dq"))
    src = "g" if dtype == FLOAT else "gf"
    nodes.append(node("ReduceMean", [src], ["pooled"], "pool",
                      [attr_ints("axes", [1]), attr_int("keepdims", 0)]))
    nodes.append(node("MatMul", ["pooled", "head"], ["logits"], "head_mm"))
    inits.append(small_tensor("head", FLOAT, [DIM, 2], finite(os.urandom(DIM * 2 * 4), FLOAT)))
    if a.dead_initializer:
        inits.append(small_tensor("dead_weight", FLOAT, [1024, 64], finite(os.urandom(1024 * 64 * 4), FLOAT)))

    emb_head = tensor_head("emb", dtype, [vocab, DIM])
    if a.external:
        loc = os.path.basename(a.out) + ".data"
        emb_head += ld(13, s(1, "location") + s(2, loc)) + ld(13, s(1, "offset") + s(2, "0")) \
            + ld(13, s(1, "length") + s(2, str(emb_bytes))) + vi(14, 1)
        with open(os.path.join(os.path.dirname(os.path.abspath(a.out)), loc), "wb") as f:
            write_payload(f, emb_bytes, dtype)
        emb_tensor_len = len(emb_head)
    else:
        emb_tensor_len = len(emb_head) + len(key(9, 2)) + len(varint(emb_bytes)) + emb_bytes

    tail = b"".join(ld(1, n) for n in nodes) + s(2, "synthetic_student")
    tail += b"".join(ld(5, t) for t in inits)
    tail += ld(11, value_info("input_ids", INT64, ["batch", "seq"]))
    tail += ld(12, value_info("logits", FLOAT, ["batch", 2]))
    if a.provenance:
        tail += s(10, "student distilled from teacher-xl")
    graph_len = len(key(5, 2)) + len(varint(emb_tensor_len)) + emb_tensor_len + len(tail)

    head = vi(1, 8) + s(2, "pytorch") + s(3, "1.13.0")
    head += ld(8, s(1, "") + vi(2, 17))
    if a.provenance:
        head += ld(14, s(1, "distilled_from") + s(2, "teacher-xl-v3"))
        head += s(6, "trained with soft targets")
    with open(a.out, "wb") as f:
        f.write(head + key(7, 2) + varint(graph_len))
        f.write(key(5, 2) + varint(emb_tensor_len) + emb_head)
        if not a.external:
            f.write(key(9, 2) + varint(emb_bytes))
            write_payload(f, emb_bytes, dtype)
        f.write(tail)
    print(f"{a.out}: {vocab * DIM + DIM * 2} parameters, {os.path.getsize(a.out)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
