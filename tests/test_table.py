import numpy as np
import pytest

from orchestrator.errors import TableError
from orchestrator.latency.table import read_archs, read_table, shipped_table, write_table

A1 = "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"
A2 = "|skip_connect~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"


def write(tmp_path, text):
    p = tmp_path / "t.csv"
    p.write_text(text)
    return p


def test_reads_blank_as_not_measured(tmp_path, space):
    t = read_table(write(tmp_path, f"arch,dev1,dev2\n{A1},1.5,\n{A2},2.0,3\n"), space)
    assert t.devices == ["dev1", "dev2"]
    assert np.isnan(t.values[0, 1]) and t.values[1, 1] == 3.0
    assert t.measured("dev2") == ([space.arch_id(space.parse(A2))], pytest.approx(np.array([3.0])))


@pytest.mark.parametrize(
    "text, needles",
    [
        ("name,dev\nx,1\n", ["line 1", "no column 'arch'"]),
        (f"arch,dev\n{A1},1\nnot-an-arch,2\n", ["line 3", "column 'arch'", "malformed"]),
        (f"arch,dev\n{A1},1\n{A1},2\n", ["line 3", "duplicate", "first on line 2"]),
        (f"arch,dev\n{A1},fast\n", ["line 2", "column 'dev'", "not a number"]),
        (f"arch,dev\n{A1},-1\n", ["line 2", "column 'dev'", "positive"]),
        (f"arch,dev\n{A1},0\n", ["line 2", "positive"]),
        (f"arch,dev,dev\n{A1},1,2\n", ["line 1", "twice"]),
        ("arch\n", ["no device columns"]),
        (f"arch,dev\n{A1},1,2\n", ["line 2", "fields"]),
        (f"arch,dev\n{A1},5_000\n", ["line 2", "column 'dev'", "not a number"]),  # float() would read 5000
        (f"arch,dev\n{A1},1e9\n{A2},1e306\n", ["line 2", "line 3", "over 1e+07 ms", "another unit"]),
        (f"arch,dev\n{A1},1e-320\n", ["line 2", "under 1e-12 ms", "another unit"]),
        (f"arch,lat_ms_,lat_ms_b\n{A1},1,2\n", ["line 1, column 2", "'lat_ms_' names no device"]),
    ],
)
def test_errors_name_file_line_and_column(tmp_path, space, text, needles):
    p = write(tmp_path, text)
    with pytest.raises(TableError) as e:
        read_table(p, space)
    msg = str(e.value)
    assert str(p) in msg
    for n in needles:
        assert n in msg


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16"])
def test_a_table_not_in_utf8_is_one_error(tmp_path, space, encoding):
    p = tmp_path / "t.csv"
    p.write_bytes(f"arch,lat_ms_café\n{A1},1.5\n{A2},2\n".encode(encoding))
    with pytest.raises(TableError, match=r"not UTF-8 text .*save the table as UTF-8") as e:
        read_table(p, space)
    assert str(p) in str(e.value)


def test_the_largest_latency_allowed_is_read(tmp_path, space):
    t = read_table(write(tmp_path, f"arch,dev\n{A1},1e7\n{A2},0.001\n"), space)
    assert t.values[:, 0].tolist() == [1e7, 0.001]


def test_missing_file(tmp_path, space):
    with pytest.raises(TableError, match="no such file"):
        read_table(tmp_path / "nope.csv", space)


def test_write_read_roundtrip(tmp_path, shipped, space):
    sub = shipped.select(["edgetpu", "fpga"])
    write_table(tmp_path / "x.csv", sub)
    back = read_table(tmp_path / "x.csv", space)
    assert back.archs == sub.archs
    np.testing.assert_allclose(back.values, sub.values, rtol=1e-5)


def test_shipped_table(shipped):
    assert shipped.values.shape == (1999, 6)
    assert int(np.isnan(shipped.column("edgetpu")).sum()) == 259
    assert not np.isnan(shipped.column("fpga")).any()


def test_read_archs_keeps_order_and_duplicates(tmp_path, space):
    p = write(tmp_path, f"arch,note\n{A2},x\n{A1},y\n{A2},z\n")
    assert read_archs(p, space) == [A2, A1, A2]
    with pytest.raises(TableError, match="line 2"):
        read_archs(write(tmp_path, "arch\nbad\n"), space)
    assert len(shipped_table(name="nb201-hwnasbench").archs) == 1999


def test_every_shipped_latency_table_is_declared_by_a_registered_space():
    from orchestrator.latency.shipped_tables import SHIPPED_LATENCY
    from orchestrator.shipped import SHIPPED_FILES
    from search_spaces import SPACES

    assert set(SHIPPED_LATENCY.names()) <= set(SPACES.names())
    assert set(SHIPPED_FILES) <= set(SHIPPED_LATENCY.get("nb201").names)


def test_plan_finds_the_shipped_table_a_space_declares(tmp_path, monkeypatch, space, shipped):
    """``latency.table: shipped`` is the table the space's SHIPPED_LATENCY entry declares (plan.py names no
    space); without an entry 'shipped' is no table, and another space's named table is refused naming the fix."""
    from orchestrator.config import parse_config
    from orchestrator.errors import ConfigError
    from orchestrator.latency.shipped_tables import SHIPPED_LATENCY, ShippedLatency, shipped_latency_table
    from orchestrator.pipeline.plan import make_plan
    from search_spaces import get_space

    path = tmp_path / "mine.csv"
    write_table(path, shipped.select(["pixel3", "raspi4", "fpga"]))
    mine = ShippedLatency(lambda sp, name: read_table(path, sp), names=("shipped", "mine-test"), label="my table")
    monkeypatch.setitem(SHIPPED_LATENCY._items, "nb201", mine)
    cfg = parse_config({"name": "x", "accuracy": {"source": "table", "table": "nb201-full"},
                        "latency": {"table": "shipped"}})
    plan = make_plan(cfg)
    assert plan.table is not None and plan.table.devices == ["pixel3", "raspi4", "fpga"]
    assert len(plan.table.archs) == len(shipped.archs)
    fb = get_space("fbnet")
    with pytest.raises(ConfigError, match="'mine-test' is my table; the space is fbnet: give a CSV path"):
        shipped_latency_table(fb, "mine-test")
    monkeypatch.delitem(SHIPPED_LATENCY._items, "fbnet")
    assert shipped_latency_table(fb) is None  # a space without a shipped table: 'shipped' is none


def test_an_nb201_table_for_another_space_is_refused_naming_the_fix():
    from orchestrator.config import parse_config
    from orchestrator.errors import ConfigError
    from orchestrator.pipeline.plan import make_plan

    cfg = parse_config({"name": "x", "space": {"name": "fbnet"}, "latency": {"table": "nb201-full"}})
    with pytest.raises(ConfigError, match="'nb201-full' is an NB201 table; the space is fbnet: give a CSV path"):
        make_plan(cfg)


def test_plain_device_columns_where_the_prefix_is_needed_name_the_fix(tmp_path, space):
    """Break test (turn 16): `hwnas latency export-shipped` writes plain device columns; read where the
    'lat_ms_' prefix names them, the error said only 'no device columns'."""
    p = write(tmp_path, f"arch,pixel3,edgegpu\n{A1},1,2\n")
    with pytest.raises(TableError, match=r"named 'lat_ms_<device>' \(ms\), and the columns \['pixel3', 'edgegpu'\] "
                                         r"are not; rename them \(e.g. lat_ms_pixel3\)"):
        read_table(p, space, device_prefix="lat_ms_")
