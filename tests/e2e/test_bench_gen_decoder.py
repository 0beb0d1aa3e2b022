"""bench/gen_decoder.py --int8 writes the 1.2B int8 decoder that
`bench/run.py --only liveness_big` checks without its 4.8 GB float32
source: it must stay the model nexus's own int8 export makes of that
source.  --check-int8 writes a small model both ways (same seed) and
compares the graph and every value with `nexus inspect --quantize int8`'s
export; a change to quant.c's form (names, nodes, rounding, scales) fails
here rather than leaving the bench timing a model nexus never writes."""
from conftest import ROOT, run


def test_gen_decoder_int8_is_the_int8_export(nexus, tmp_path):
    r = run("/usr/bin/python3", ROOT / "bench/gen_decoder.py", tmp_path, "--check-int8", nexus,
            "--params", "2.2M", "--dim", "64")
    assert r.returncode == 0, r.stderr
    assert "23 initializers, 66 nodes: the same as nexus's export" in r.stderr


def test_check_int8_can_fail(nexus, tmp_path):
    """A generator that rounds differently from quant.c is caught."""
    src = (ROOT / "bench/gen_decoder.py").read_text()
    assert "np.rint(w / s)" in src
    broken = tmp_path / "gen_floor.py"
    broken.write_text(src.replace("np.rint(w / s)", "np.floor(w / s)"))
    r = run("/usr/bin/python3", broken, tmp_path / "w", "--check-int8", nexus,
            "--params", "2.2M", "--dim", "64")
    assert r.returncode == 1
    assert "layers.0.up.weight/int8: values differ" in r.stderr
