"""Compressed input tables and wrong kinds of paths (gzip, bgzip, directories, bigWig paths).

Inputs are written here: a random 2000 bp FASTA (chrA), a small model (`pmodel init`, 4 blocks,
D 8, L 40, O 16, one head of 2 tracks), and tables compressed with Python's gzip module (one
member, and two concatenated members) and with bgzip (the `bgzip` program when installed, else
the BGZF writer below, written from the SAM/BGZF specification; the file is checked to be BGZF
either way: "BC" extra field, several blocks, the 28-byte end-of-file block).

Checks (each program's output on the compressed input must equal its output on the plain one):
 (a) `promoterai` on a variant table of 2500 rows (~170 KB, so several BGZF blocks; CRLF line
     ends, a blank line, an extra `id` column, no newline after the last row): gzip, two-member
     gzip and bgzip give output byte-identical to the plain file, which has every row scored.
 (b) `pprecompute` (flank 10, 3 TSSs) with a gzip and a bgzip TSS table: the same decompressed
     table as with the plain one (non-empty).
 (c) `ppreprocess` with a gzip TSS table and a gzip track table: the same /x and /y in the
     shard as with the plain tables; `pmodel predict` with a gzip sequence file: the same head
     outputs as with the plain file.
 (d) A directory given as promoterai --var_file, pprecompute --tss_file, ppreprocess
     --tss_file and --bigwig_files, pmodel predict --seq_file: exit status 1 or 2, stderr is
     exactly one line, starting with "[E", containing "is a directory" and the path.
 (e) A truncated gzip variant table (cut in the middle, after some complete lines), a bgzip one
     cut in the middle of a block, a bgzip one without its end-of-file block and a bgzip one
     with damaged bytes in its second block: non-zero exit, exactly one stderr line (htslib's
     own messages kept quiet), starting with "[E" and naming the file, no output table.
 (f) A bigWig (track table row) that does not exist (a relative path), that is a directory, or
     that is a text file: ppreprocess exits 1 with exactly one stderr line (no raw libBigWig
     lines such as "[urlOpen] ..."), starting with "[E" and naming the path.
Usage: /usr/bin/python3 tests/test_compressed_input.py --bin BUILD_DIR
"""

import argparse
import gzip
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "ref"))
import harness as H  # noqa: E402

BIN = None
MODEL_ARGS = ["--num_blocks", "4", "--model_dim", "8", "--input_length", "40",
              "--output_length", "16", "--output_dims", "2"]
L = 40
ENV = dict(os.environ, OMP_NUM_THREADS="1")
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def run(prog, args, cwd, timeout=120):
    cmd = [os.path.join(BIN, prog)] + [str(a) for a in args]
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=ENV)
    print("$ " + " ".join(cmd[:1] + [os.path.basename(c) if os.path.isabs(c) else c
                                     for c in cmd[1:]]) + f"  -> exit {p.returncode}", flush=True)
    for line in p.stderr.strip().splitlines()[-6:]:
        print("  stderr: " + line)
    return p


def bgzf_python(data):
    """BGZF (SAM specification section 4.1): deflate blocks of at most 65280 input bytes, each
    a gzip member with the extra subfield BC holding the block size - 1, then the EOF block."""
    out = bytearray()
    for i in range(0, len(data), 65280):
        chunk = data[i:i + 65280]
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        comp = c.compress(chunk) + c.flush()
        bsize = 18 + len(comp) + 8
        out += struct.pack("<4BI2BH", 31, 139, 8, 4, 0, 0, 255, 6)
        out += b"BC" + struct.pack("<HH", 2, bsize - 1) + comp
        out += struct.pack("<II", zlib.crc32(chunk) & 0xFFFFFFFF, len(chunk))
    return bytes(out) + BGZF_EOF


def bgzip_bytes(data, tmp):
    exe = shutil.which("bgzip")
    if exe:
        src = os.path.join(tmp, "bgzip_input")
        with open(src, "wb") as f:
            f.write(data)
        out = subprocess.run([exe, "-c", src], capture_output=True, check=True).stdout
        os.unlink(src)
        return out, "bgzip program"
    return bgzf_python(data), "Python BGZF writer (no bgzip program installed)"


def bgzf_blocks(b):
    """Offsets of the BGZF blocks of b, or None when b is not BGZF."""
    offs, p = [], 0
    while p < len(b):
        if b[p:p + 4] != b"\x1f\x8b\x08\x04" or b[p + 12:p + 14] != b"BC":
            return None
        offs.append(p)
        p += struct.unpack("<H", b[p + 16:p + 18])[0] + 1
    return offs if p == len(b) else None


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def one_error_line(ck, p, label, *needles):
    lines = p.stderr.strip().splitlines()
    ok = len(lines) == 1 and lines[0].startswith("[E") and all(n in lines[0] for n in needles)
    ck.check(ok, f"{label}: exactly one stderr line, '[E ...' naming {', '.join(needles)} "
                 f"(got {lines!r})")


def main():
    global BIN
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", required=True)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    BIN = os.path.abspath(args.bin)
    for prog in ("promoterai", "pprecompute", "ppreprocess", "pmodel"):
        H.require_binary(BIN, prog)
    ck = H.Checker()
    tmp = tempfile.mkdtemp(prefix="pai_gz_")
    try:
        body(ck, tmp)
    finally:
        if not ck.failed and not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("kept " + tmp)
    return ck.finish()


def body(ck, tmp):
    rng = random.Random(20240607)
    genome = "".join(rng.choice("ACGT") for _ in range(2000))
    fasta = os.path.join(tmp, "g.fa")
    H.write_fasta(fasta, [("chrA", genome)])
    model = os.path.join(tmp, "m")
    p = run("pmodel", ["init", "--model_folder", model, "--seed", "3"] + MODEL_ARGS, tmp)
    if not ck.check(p.returncode == 0, "setup: pmodel init"):
        return
    d = os.path.join(tmp, "dir_not_file")
    os.makedirs(d)

    # ---- (a) the variant table
    rows = []
    for i in range(2500):
        pos = rng.randrange(1, 2001)
        ref = genome[pos - 1]
        alt = rng.choice([b for b in "ACGT" if b != ref])
        ident = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(40))
        rows.append(f"chrA\t{pos}\t{ref}\t{alt}\t{rng.choice(['+', '-', '1', '-1'])}\t{ident}")
    rows.insert(1200, "")   # a blank line
    plain = ("chrom\tpos\tref\talt\tstrand\tid\r\n" + "\r\n".join(rows)).encode()
    bgz, how = bgzip_bytes(plain, tmp)
    blocks = bgzf_blocks(bgz)
    print(f"bgzip input written by the {how}: {len(plain)} bytes in "
          f"{len(blocks) if blocks else '?'} BGZF blocks")
    ck.check(blocks is not None and len(blocks) >= 3 and bgz.endswith(BGZF_EOF),
             "setup: the bgzip variant table is BGZF with several blocks and the EOF block")
    half = len(plain) // 2
    inputs = {"v.tsv": plain, "v.tsv.gz": gzip.compress(plain),
              "v2.tsv.gz": gzip.compress(plain[:half]) + gzip.compress(plain[half:]),
              "v.tsv.bgz": bgz}
    for name, data in inputs.items():
        write(os.path.join(tmp, name), data)
    std = ["--model_folder", model, "--fasta_file", fasta, "--input_length", L, "--quiet",
           "--device", "cpu", "--threads", "1", "--batch_size", "64"]
    outs = {}
    for name in inputs:
        out = os.path.join(tmp, "out_" + name.replace(".", "_") + ".tsv")
        p = run("promoterai", std + ["--var_file", name, "--output", out], tmp)
        ok = ck.check(p.returncode == 0 and os.path.isfile(out),
                      f"(a) promoterai on {name}: exit 0 and an output table")
        outs[name] = open(out, "rb").read() if ok else None
    base = outs["v.tsv"]
    if base is not None:
        lines = base.decode().split("\n")
        ck.check(len(lines) == 2502 and lines[-1] == "" and
                 all(ln.count("\t") == 6 and ln.split("\t")[6] != "" for ln in lines[1:-1]),
                 f"(a) the plain table's output has 2500 scored rows ({len(lines) - 2} lines)")
    for name in ("v.tsv.gz", "v2.tsv.gz", "v.tsv.bgz"):
        ck.check(base is not None and outs[name] == base,
                 f"(a) output for {name} is byte-identical to the plain file's")

    # ---- (e) truncated compressed variant tables
    gz = inputs["v.tsv.gz"]
    cut_gz = gz[:len(gz) * 6 // 10]
    d_obj = zlib.decompressobj(31)
    n_lines = d_obj.decompress(cut_gz).count(b"\n")
    ck.check(n_lines > 100, f"setup: the cut gzip still holds {n_lines} complete lines")
    cut_bgz = bgz[:blocks[1] + 500] if blocks and len(blocks) > 2 else bgz[:1000]
    bad = bytearray(bgz)
    if blocks and len(blocks) > 2:   # damage the deflate data of the second block
        for k in range(blocks[1] + 200, blocks[1] + 216):
            bad[k] ^= 0x5A
    truncated = {"cut.tsv.gz": cut_gz, "cut.tsv.bgz": cut_bgz, "noeof.tsv.bgz": bgz[:-28],
                 "corrupt.tsv.bgz": bytes(bad)}
    for name, data in truncated.items():
        write(os.path.join(tmp, name), data)
        out = os.path.join(tmp, "out_" + name + ".tsv")
        p = run("promoterai", std + ["--var_file", name, "--output", out], tmp)
        ck.check(p.returncode != 0, f"(e) promoterai on {name}: non-zero exit")
        one_error_line(ck, p, f"(e) promoterai on {name}", name)
        ck.check(not os.path.exists(out), f"(e) promoterai on {name}: no output table")

    # ---- (b) pprecompute with compressed TSS tables
    tss = b"chrom\ttss_pos\tstrand\tgene\nchrA\t300\t+\tG1\nchrA\t900\t-\tG2\nchrA\t1700\t1\tG3\n"
    tss_inputs = {"tss.tsv": tss, "tss.tsv.gz": gzip.compress(tss),
                  "tss.tsv.bgz": bgzip_bytes(tss, tmp)[0]}
    tables = {}
    for name, data in tss_inputs.items():
        write(os.path.join(tmp, name), data)
        out = os.path.join(tmp, "pre_" + name.replace(".", "_") + ".tsv.gz")
        p = run("pprecompute", ["--tss_file", name, "--fasta_file", fasta, "--model_folder",
                                model, "--out", out, "--flank", 10, "--threads", 1, "--device",
                                "cpu", "--quiet"], tmp)
        ok = ck.check(p.returncode == 0 and os.path.isfile(out),
                      f"(b) pprecompute with {name}: exit 0 and an output table")
        tables[name] = gzip.open(out, "rb").read() if ok else None
    base = tables["tss.tsv"]
    ck.check(base is not None and base.count(b"\n") == 1 + 3 * 21 * 3,
             "(b) the plain TSS table gives 3 TSSs x 21 positions x 3 alternates rows")
    for name in ("tss.tsv.gz", "tss.tsv.bgz"):
        ck.check(base is not None and tables[name] == base,
                 f"(b) pprecompute with {name} writes the same table as with the plain one")

    # ---- (c) ppreprocess with compressed TSS and track tables; pmodel predict
    bwdir = os.path.join(tmp, "bw")
    os.makedirs(bwdir)
    for side in ("fwd", "rev"):
        iv = [(a, a + 7, rng.random() * 5) for a in range(0, 2000, 13)]
        H.write_bigwig(os.path.join(bwdir, f"t.{side}.bw"), [("chrA", 2000)], {"chrA": iv})
    trk = b"name\tfwd\trev\txform\nt\tt.fwd.bw\tt.rev.bw\tlambda x: np.nan_to_num(x)\n"
    ptss = b"chrom\tpos\tstrand\nchrA\t500\t+\nchrA\t1500\t-\n"
    write(os.path.join(bwdir, "tracks.tsv"), trk)
    write(os.path.join(bwdir, "tracks.tsv.gz"), gzip.compress(trk))
    write(os.path.join(tmp, "ptss.tsv"), ptss)
    write(os.path.join(tmp, "ptss.tsv.gz"), gzip.compress(ptss))
    prep = ["--fasta_file", fasta, "--input_length", 64, "--output_length", 32, "--quiet"]
    shards = {}
    for tag, suffix in (("plain", ""), ("gzip", ".gz")):
        h5 = os.path.join(tmp, "shards_" + tag)
        p = run("ppreprocess", prep + ["--h5_folder", h5, "--tss_file", "ptss.tsv" + suffix,
                                       "--bigwig_files", "bw/tracks.tsv" + suffix], tmp)
        shard = os.path.join(h5, "chrA.h5")
        ok = ck.check(p.returncode == 0 and os.path.isfile(shard),
                      f"(c) ppreprocess with {tag} TSS and track tables: exit 0, chrA.h5")
        if ok:
            with h5py.File(shard, "r") as f:
                shards[tag] = (f["x"][()], f["y"][()])
    if len(shards) == 2:
        ck.check(shards["plain"][0].shape[0] == 2 and
                 all(np.array_equal(a, b) for a, b in zip(shards["plain"], shards["gzip"])),
                 "(c) the shards of the plain and the gzip tables hold the same /x and /y")
    seqs = "".join(
        genome[s:s + L] + "\n" for s in range(0, 1000, 97)).encode()
    write(os.path.join(tmp, "seqs.txt"), seqs)
    write(os.path.join(tmp, "seqs.txt.gz"), gzip.compress(seqs))
    heads = {}
    for name in ("seqs.txt", "seqs.txt.gz"):
        out = os.path.join(tmp, name + ".h5")
        p = run("pmodel", ["predict", "--model_folder", model, "--seq_file", name, "--out", out,
                           "--device", "cpu", "--threads", 1], tmp)
        if ck.check(p.returncode == 0, f"(c) pmodel predict on {name}: exit 0"):
            with h5py.File(out, "r") as f:
                heads[name] = f["head_0"][()]
    if len(heads) == 2:
        ck.check(heads["seqs.txt"].shape[0] == 11 and
                 np.array_equal(heads["seqs.txt"], heads["seqs.txt.gz"]),
                 "(c) pmodel predict gives the same outputs for the gzip sequence file")

    # ---- (d) directories where a file is expected
    dname = os.path.basename(d)
    dir_cases = [
        ("promoterai --var_file", "promoterai", std + ["--var_file", d, "--output",
                                                       os.path.join(tmp, "o_dir.tsv")]),
        ("pprecompute --tss_file", "pprecompute",
         ["--tss_file", d, "--fasta_file", fasta, "--model_folder", model, "--out",
          os.path.join(tmp, "o_dir.tsv.gz"), "--flank", 5, "--device", "cpu", "--quiet"]),
        ("ppreprocess --tss_file", "ppreprocess",
         prep + ["--h5_folder", os.path.join(tmp, "o_dir1"), "--tss_file", d,
                 "--bigwig_files", "bw/tracks.tsv"]),
        ("ppreprocess --bigwig_files", "ppreprocess",
         prep + ["--h5_folder", os.path.join(tmp, "o_dir2"), "--tss_file", "ptss.tsv",
                 "--bigwig_files", d]),
        ("pmodel predict --seq_file", "pmodel",
         ["predict", "--model_folder", model, "--seq_file", d, "--out",
          os.path.join(tmp, "o_dir.h5"), "--device", "cpu"]),
    ]
    for label, prog, args in dir_cases:
        p = run(prog, args, tmp)
        ck.check(p.returncode in (1, 2), f"(d) a directory as {label}: exit 1 or 2")
        one_error_line(ck, p, f"(d) a directory as {label}", "is a directory", dname)

    # ---- (f) bigWig paths that cannot be opened
    os.makedirs(os.path.join(bwdir, "sub.bw"))
    write(os.path.join(bwdir, "text.bw"), b"not a bigWig\n" * 10)
    for label, rev in (("missing", "nope.rev.bw"), ("a directory", "sub.bw"),
                       ("a text file", "text.bw")):
        tname = f"tracks_{rev.replace('.', '_')}.tsv"
        write(os.path.join(bwdir, tname),
              trk.replace(b"t.rev.bw", rev.encode()))
        p = run("ppreprocess", prep + ["--h5_folder", os.path.join(tmp, "o_bw"), "--tss_file",
                                       "ptss.tsv", "--bigwig_files", "bw/" + tname], tmp)
        ck.check(p.returncode == 1, f"(f) bigWig that is {label}: exit 1")
        one_error_line(ck, p, f"(f) bigWig that is {label}", rev)


if __name__ == "__main__":
    sys.exit(main())
