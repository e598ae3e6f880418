import pytest

from orchestrator.errors import UnknownNameError
from orchestrator.registry import Registry


def test_unknown_name_lists_valid_names_and_suggests():
    reg: Registry[int] = Registry("widget")
    reg.add("alpha", 1)
    reg.add("beta", 2)
    with pytest.raises(UnknownNameError) as e:
        reg.get("alpah")
    msg = str(e.value)
    assert "unknown widget 'alpah'" in msg and "'alpha'" in msg and "alpha, beta" in msg
    assert isinstance(e.value, KeyError)


def test_register_decorator_and_duplicates():
    reg: Registry[object] = Registry("thing")

    @reg.register("x", help="an x")
    class X:
        pass

    assert reg.get("x") is X and reg.names() == ["x"] and "x" in reg and reg.describe("x") == "an x"
    with pytest.raises(ValueError, match="already registered"):
        reg.add("x", 3)
