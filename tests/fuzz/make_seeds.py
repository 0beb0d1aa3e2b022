#!/usr/bin/env python3
"""Write the seed corpora of the fuzz targets that read binary formats
(elf, teacher, magic, export) into tests/fuzz/corpus/.  The seeds are made
here, from the formats' layouts, so nothing downloaded or built elsewhere is
committed; run it again after changing it and commit what it writes."""
import io
import json
import pathlib
import shutil
import struct
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent / "corpus"


def put(kind, name, data):
    d = ROOT / kind
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def elf(interp=b"/lib64/ld-linux-x86-64.so.2", needed=(b"libc.so.6", b"libm.so.6"),
        runpath=b"$ORIGIN/../lib", etype=3):
    """A minimal ELF64 file: one PT_LOAD over the whole file, PT_INTERP and a
    PT_DYNAMIC whose DT_STRTAB points into the load segment."""
    strtab = b"\0"
    offs = []
    for s in list(needed) + ([runpath] if runpath else []):
        offs.append(len(strtab))
        strtab += s + b"\0"
    ehsize, phsize, nph = 64, 56, 3
    interp_off = ehsize + phsize * nph
    interp_b = interp + b"\0" if interp else b""
    str_off = interp_off + len(interp_b)
    dyn = []
    for o in offs[:len(needed)]:
        dyn.append((1, o))                      # DT_NEEDED
    if runpath:
        dyn.append((29, offs[-1]))              # DT_RUNPATH
    dyn += [(5, 0x400000 + str_off), (10, len(strtab)), (0, 0)]  # STRTAB, STRSZ, NULL
    dyn_off = (str_off + len(strtab) + 7) & ~7
    body = b"".join(struct.pack("<qQ", t, v) for t, v in dyn)
    total = dyn_off + len(body)
    eh = struct.pack("<4sBBBBB7sHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, b"\0" * 7,
                     etype, 62, 1, 0x400000, ehsize, 0, 0, ehsize, phsize, nph, 64, 0, 0)
    ph = struct.pack("<IIQQQQQQ", 1, 5, 0, 0x400000, 0x400000, total, total, 0x1000)
    ph += struct.pack("<IIQQQQQQ", 3, 4, interp_off, 0x400000 + interp_off,
                      0x400000 + interp_off, len(interp_b), len(interp_b), 1)
    ph += struct.pack("<IIQQQQQQ", 2, 6, dyn_off, 0x400000 + dyn_off, 0x400000 + dyn_off,
                      len(body), len(body), 8)
    out = eh + ph + interp_b + strtab
    out += b"\0" * (dyn_off - len(out)) + body
    return out


def torch_zip(stored=True):
    """The layout torch.save writes: archive/data.pkl, archive/data/N
    (stored, not deflated), archive/version."""
    b = io.BytesIO()
    mode = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    with zipfile.ZipFile(b, "w", mode) as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        z.writestr("archive/data/0", struct.pack("<64f", *[i * 0.25 for i in range(64)]))
        z.writestr("archive/data/1", bytes(range(256)) * 2)
        z.writestr("archive/version", b"3\n")
    return b.getvalue()


def torch_zip_typed():
    """torch.save's layout with a data.pkl written the way torch writes it
    (protocol 2): a bfloat16 storage '0' under key 'a', a float16 one '1'
    under 'b' (the class, the string 'storage' and the location as memo
    references the second time), for the pickle scan."""
    pkl = (b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01ctorch._utils\n_rebuild_tensor_v2\nq\x02"
           b"((X\x07\x00\x00\x00storageq\x03ctorch\nBFloat16Storage\nq\x04X\x01\x00\x00\x000q\x05"
           b"X\x03\x00\x00\x00cpuq\x06K\x80tq\x07QK\x00K\x80\x85q\x08K\x01\x85q\x09\x89tq\x0aRq\x0b"
           b"X\x01\x00\x00\x00bq\x0ch\x02((h\x03ctorch\nHalfStorage\nq\x0dX\x01\x00\x00\x001q\x0e"
           b"h\x06K\x80tq\x0fQK\x00K\x80\x85q\x10K\x01\x85q\x11\x89tq\x12Rq\x13u.")
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        # 16-bit floats in [1, 2), mantissas scrambled (a sequence would be
        # left out as what a fresh initialisation writes)
        z.writestr("archive/data/0", struct.pack("<128H", *[0x3f80 | (i * 37) % 128
                                                            for i in range(128)]))
        z.writestr("archive/data/1", struct.pack("<128H", *[0x3c00 | (i * 389) % 1024
                                                            for i in range(128)]))
        z.writestr("archive/version", b"3\n")
    return b.getvalue()


def safetensors():
    data = struct.pack("<32f", *[i / 7 for i in range(32)])
    head = json.dumps({"w": {"dtype": "F32", "shape": [4, 8], "data_offsets": [0, 128]},
                       "__metadata__": {"format": "pt"}}).encode()
    return struct.pack("<Q", len(head)) + head + data


def main():
    put("elf", "dyn_interp.so", elf())
    put("elf", "no_runpath.so", elf(runpath=None))
    put("elf", "static_exec", elf(interp=None, needed=(), runpath=None, etype=2))
    put("elf", "header_only", elf()[:64])
    put("teacher", "torch_stored.pt", torch_zip())
    put("teacher", "torch_deflated.pt", torch_zip(stored=False))
    put("teacher", "weights.safetensors", safetensors())
    put("teacher", "torch_typed.pt", torch_zip_typed())
    put("teacher", "protocol2.pkl", b"\x80\x02]q\x00(K\x01K\x02e.")
    put("magic", "zip.bin", torch_zip())
    put("magic", "safetensors.bin", safetensors())
    put("magic", "elf.bin", elf())
    put("magic", "text.txt", b"An ordinary README line.\nAnother: 0123456789abcdef0123456789abcdef\n")
    put("magic", "base64.txt", b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=" * 8)
    put("magic", "gzip.bin", b"\x1f\x8b\x08\x00" + b"\0" * 16)
    # the exporter starts from the ONNX reader's seeds
    (ROOT / "export").mkdir(exist_ok=True)
    for f in sorted((ROOT / "onnx").iterdir()):
        if f.suffix == ".onnx" and f.stat().st_size:
            shutil.copyfile(f, ROOT / "export" / f.name)


if __name__ == "__main__":
    main()
