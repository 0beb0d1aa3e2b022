"""Data smuggled as Python, JSON or YAML literals; a planted nexus_cli and
import-time probes; ONNX strings and external data. (from test_redteam.py,
by scripts/dev/regroup_tests.py).
"""
import base64

import numpy as np
from onnx import TensorProto, helper

import bundle_fixture as bf
from conftest import sandbox_usable
from verify_helpers import codes, verify, with_model


def floats(n, seed=7):
    return np.random.default_rng(seed).standard_normal(n).astype(np.float32)


# The dense encodings below carry 16 KiB of float32 each: the size of a
# teacher layer, far more than any legitimate source or config needs as a
# literal.
def py_float_list():
    return "W = [" + ", ".join(f"{x:.6g}" for x in floats(4096)) + "]\n"


def py_bytes_literal():
    return "W = b'" + "".join(f"\\x{c:02x}" for c in floats(4096).tobytes()) + "'\n"


def py_wrapped_base64():
    b = base64.encodebytes(floats(4096).tobytes()).decode()
    return 'W = """\n' + b + '"""\n'


def py_spaced_hex():
    return 'W = """' + " ".join(f"{c:02x}" for c in floats(4096).tobytes()) + '"""\n'


def py_int_tuple():
    return "W = (" + ",".join(str(c) for c in floats(4096).tobytes()) + ")\n"


def fail_codes(nexus, b):
    rc, rep = verify(nexus, b)
    assert rc == 1 and rep["verdict"] == "FAIL", rep
    return codes(rep, "FAIL")


def runtime_with_packages(pkgs):
    return bf.RUNTIME_YAML.replace("python_packages: [onnxruntime, numpy]",
                                   f"python_packages: [{', '.join(pkgs)}]")


PROBE_C = r'''
#include <dirent.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

static int esc;
static void bad(const char *what) { fprintf(stderr, "ESCAPED %s; ", what); esc = 1; }

int main(int argc, char **argv)
{
    const char *dirs[] = { "/root", "/home", "/work", "/tmp", "/etc", NULL };
    const char *writes[] = { "HOSTMARK", "/tmp/nexus_probe_owned", "/owned", NULL };
    char self[4096], path[4200];
    ssize_t n;
    int i, fd;

    for (i = 0; dirs[i]; i++) {
        DIR *d = opendir(dirs[i]);
        if (d && readdir(d) && readdir(d) && readdir(d)) bad(dirs[i]);
        if (d) closedir(d);
    }
    if ((fd = open("/etc/shadow", O_RDONLY)) >= 0) bad("/etc/shadow");
    if ((fd = open("/etc/passwd", O_RDONLY)) >= 0) bad("/etc/passwd");
    /* a private tmpfs may accept these: the test looks for them on the host */
    for (i = 0; writes[i]; i++)
        if ((fd = open(writes[i], O_WRONLY | O_CREAT, 0644)) >= 0) fprintf(stderr, "wrote %s; ", writes[i]);
    if ((n = readlink("/proc/self/exe", self, sizeof(self) - 1)) > 0) {
        self[n] = 0;
        snprintf(path, sizeof(path), "%s/../owned", dirname(self));
        if ((fd = open(path, O_WRONLY | O_CREAT, 0644)) >= 0) fprintf(stderr, "wrote %s; ", path);
    }
    {
        struct sockaddr_in a = { AF_INET, htons(53) };
        int s = socket(AF_INET, SOCK_STREAM, 0);
        inet_pton(AF_INET, "1.1.1.1", &a.sin_addr);
        if (s >= 0 && connect(s, (void *)&a, sizeof(a)) == 0) bad("network");
    }
    fprintf(stderr, "probe done (%s)\n", esc ? "escaped" : "contained");
    return 3;
}
'''


def sandbox_ok():
    """Some sandbox backend (bwrap or landlock) can run here; other modules
    import this to skip tests that need one."""
    return sandbox_usable("bwrap") or sandbox_usable("landlock")


IMPORT_PROBE = '''\
import os
import socket

SEEN = []
try:
    SEEN.append("read " + open("/etc/shadow").read(8))
except OSError:
    pass
for d in ("/root", "/home", "/work"):
    try:
        if len(os.listdir(d)) > 0:
            SEEN.append("list " + d)
    except OSError:
        pass
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2)
    SEEN.append("network")
except OSError:
    pass
try:
    with open("HOSTMARK", "w") as f:
        f.write("x")
    SEEN.append("wrote host")
except OSError:
    pass
if SEEN:
    raise SystemExit("ESCAPED " + ", ".join(SEEN))
'''


def blob_b64(nbytes=40 << 10):
    """A second model's worth of bytes, under the 64 KiB size slack."""
    return base64.b64encode(floats(nbytes // 4).tobytes()).decode()


def string_tensor(name):
    t = helper.make_tensor(name, TensorProto.STRING, [1], [blob_b64().encode()])
    return t


def external_model(bundle, extra, offset=0):
    """W kept in model/student_model.onnx.data at offset, plus extra bytes
    in that file that no tensor reads."""
    m = bf.student_model()
    w = m.graph.initializer[1]
    data = w.raw_data
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "student_model.onnx.data"), ("offset", str(offset)),
                 ("length", str(len(data)))):
        e = w.external_data.add()
        e.key, e.value = k, v
    bundle.write("model/student_model.onnx.data", b"\0" * offset + data + extra)
    with_model(bundle, m)
