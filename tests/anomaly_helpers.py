"""Shared by the test_anomaly_* files: where an AnomalyError should point, and bit
comparisons.

Lines are never hard-coded: a statement that should be blamed carries a marker comment
``# @name``, and ``markers(__file__)`` maps each marker to its line number in that file."""
import re
import struct

import numpy as np


def markers(path):
    """(LINES, at, source) for the test file at ``path``: LINES maps each ``# @name`` marker
    to its line; at(name) is what AnomalyError.location should end with (the file and the
    marked line); source(name) is that line's text."""
    found = {}
    with open(path, encoding="utf-8") as f:
        for number, text in enumerate(f, start=1):
            m = re.search(r"#\s*@([\w-]+)\s*$", text)
            if m:
                assert m.group(1) not in found, f"marker @{m.group(1)} used twice"
                found[m.group(1)] = number

    def at(marker):
        return f"{path}:{found[marker]}"

    def source(marker):
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()[found[marker] - 1].strip()

    return found, at, source


def bits(x):
    return struct.pack("<d", float(x))


def same_bits(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and bool((a.view(np.int64) == b.view(np.int64)).all())


def flat(result):
    """Every array in a (nested) Function result, flattened, for bit comparisons."""
    if isinstance(result, (tuple, list)):
        return [a for r in result for a in flat(r)]
    return [np.asarray(result, dtype=np.float64)]
